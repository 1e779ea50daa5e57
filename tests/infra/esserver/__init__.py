"""An in-repo server that speaks the Elasticsearch 8 REST protocol, for tests.

No Elasticsearch can be installed where the tests run, so the Elasticsearch
client path of the service is tested against this server: indices with
refresh visibility, documents with `_seq_no`/`_primary_term`, the query DSL
subset the service sends, sorting with `search_after`, points in time,
scrolls, and fault injection (error statuses, delays, dropped connections,
shard failures, expired PITs).

Modules: `server` (HTTP, faults applied), `routes` (route table), `api`
(endpoints), `store` (indices, refresh), `documents` (writes, bulk),
`mapping` and `fields` (types and values), `query`, `sorting`, `request`
and `search` (search APIs), `contexts` (PITs and scrolls), `dates`,
`faults`, `errors`.
"""

from tests.infra.esserver.server import EsProtocolServer

__all__ = ["EsProtocolServer"]
