"""Real engines for tests, the demo and the benchmark.

`PostgresCluster` starts a throwaway PostgreSQL cluster from the installed
server binaries; `OpenSearchNode` starts a single-node OpenSearch from Maven
Central artifacts. Both bind to 127.0.0.1, stop with their parent process and
raise `EngineStartError` (with the engine's own log tail) when they cannot
start.
"""

from tests.infra.harness.opensearch import OpenSearchNode
from tests.infra.harness.postgres import PostgresCluster
from tests.infra.harness.process import EngineStartError

__all__ = ["EngineStartError", "OpenSearchNode", "PostgresCluster"]
