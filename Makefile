.PHONY: test demo bench freshness callers install screenshot

## Install what the service, the demo and the benchmark need (PostgreSQL server, Java, Maven if missing; .venv); the tests add theirs
install:
	scripts/install-deps.sh

## Run the whole test suite against real PostgreSQL and OpenSearch
test:
	scripts/test.sh

## Run the service on :8000 against a local OpenSearch and PostgreSQL with sample events
demo:
	scripts/demo.sh

## Measure events per second end to end (N=200000 by default)
bench:
	scripts/bench.sh

## Write screenshots of the status page (light, dark, phone width) into docs/, from a real run
screenshot:
	scripts/screenshot.sh

## Measure freshness: indexed event to PostgreSQL row at the default 60 s overlap, once the overlap window is full (1,000 events/s with the trigger and with a 5 s interval; 5,000 events/s keep-up)
freshness:
	scripts/install-deps.sh
	.venv/bin/python -m benchmarks.freshness $(if $(SECONDS),--seconds $(SECONDS))

## Hostile callers during a real sync: idle keep-alive, late bodies, slowloris, 1,000 concurrent status requests
callers:
	scripts/install-deps.sh
	.venv/bin/python -m benchmarks.callers $(if $(N),--events $(N)) $(if $(SECONDS),--seconds $(SECONDS))
