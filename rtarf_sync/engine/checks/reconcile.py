"""Reconciling deletes after a `full` or `range` run has read its whole scope.

    1. While the run reads, every page records its keys (rows and dead letters alike:
       a document set aside still exists) in an unlogged table of the run,
       `rtarf_sync_seen_<run id>`, in the page's own transaction.
    2. Candidates: live rows in the run's scope that were not read
       (`rtarf_sync_gone_<run id>`, built by one anti-join in PostgreSQL).
       Only rows of indices the setting resolves to now are in scope (index_scope.py):
       rows of an index the setting no longer names are never candidates.
    3. Rows of indices that no longer exist are dropped from the candidates
       (retention is not deletion) unless RTARF_DELETE_VANISHED_INDICES=true.
    4. The rest are looked up by id over the index setting, 1,000 at a time; any
       document the engine still has is dropped from the candidates. What is left,
       the engine has confirmed gone (an incomplete answer fails the run instead),
       once the scope is resolved again: an index closed or deleted meanwhile
       fails the run or leaves the candidates, as in 2 and 3.
    5. Safety valve: more than RTARF_DELETE_MAX_FRACTION of the scope's live rows
       means nothing is deleted and the run fails (DeletesRefused), unless forced;
       at most RTARF_DELETE_MIN_COUNT rows always pass whatever the fraction.
    6. One fenced transaction marks (`soft`) or removes (`hard`) those rows.

Python holds at most one batch of keys at a time, whatever the table's size: the
keys live in PostgreSQL, and both work tables are dropped when the run ends
(or by the next reconciling run, if a crash left them behind).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable, TypeVar

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import SearchApi
from rtarf_sync.engine.errors import RunAborted
from rtarf_sync.engine.source.index_scope import IndexScope, resolve_scope
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.plan import RunScope
from rtarf_sync.engine.source.reader import check_complete
from rtarf_sync.engine.retry import RetryPolicy, with_retry
from rtarf_sync.engine.target.tables import Tables

log = logging.getLogger("rtarf_sync.reconcile")
T = TypeVar("T")
LOOKUP_BATCH = 1000
_WORK_TABLES = ("rtarf_sync_seen_", "rtarf_sync_gone_")


class DeletesRefused(RunAborted):
    """The reconciliation would delete more than the safety valve allows; nothing was deleted."""


def unread_keys(target: sa.Table, seen: str, in_scope: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The keys of the live rows `in_scope` that the key table `seen` does not hold."""
    read = sa.table(seen, sa.column("es_index"), sa.column("es_id"))
    return sa.select(target.c.es_index, target.c.es_id).where(
        target.c.deleted_at.is_(None),
        in_scope,
        ~sa.exists().where(read.c.es_index == target.c.es_index, read.c.es_id == target.c.es_id),
    )


def prepare_key_table(connection: sa.Connection, seen: str) -> None:
    """Index and analyse a run's key table once every key is in, before `unread_keys` reads it.

    The target's statistics may be stale (a first load just wrote it): a planner that thinks the
    scope holds one row picks a nested loop, which without the index scans the whole key table
    once per row (a range run over one day of 87,400 keys took 400 s that way, not 1).
    """
    connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {seen}_key ON {seen} (es_index, es_id)")
    connection.exec_driver_sql(f"ANALYZE {seen}")


class Reconciliation:
    """The delete reconciliation of one run: its work tables, candidates, lookups and valve."""

    def __init__(
        self,
        engine: sa.Engine,
        tables: Tables,
        api: SearchApi,
        settings: Settings,
        scope: RunScope,
        run_id: int,
        retry: RetryPolicy,
        lease: Lease,
        fence: Fence,
    ) -> None:
        self.engine, self.tables, self.api, self.settings = engine, tables, api, settings
        self.scope, self.run_id, self.retry = scope, run_id, retry
        self.lease, self.fence = lease, fence
        self.indices: IndexScope | None = None  # resolved when the candidates are built
        self.seen = f"rtarf_sync_seen_{int(run_id)}"
        self.gone = f"rtarf_sync_gone_{int(run_id)}"

    # -- work tables -------------------------------------------------------------------------

    def open(self) -> None:
        """Drop work tables left by crashed runs, then create this run's key table."""
        with self.engine.begin() as connection:
            self._drop_orphans(connection)
            connection.exec_driver_sql(
                f"CREATE UNLOGGED TABLE IF NOT EXISTS {self.seen} (es_index text NOT NULL, es_id text NOT NULL)"
            )

    def _drop_orphans(self, connection: sa.Connection) -> None:
        runs = self.tables.runs
        names = connection.execute(
            sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND (tablename LIKE 'rtarf\\_sync\\_seen\\_%' OR tablename LIKE 'rtarf\\_sync\\_gone\\_%')"
            )
        ).scalars()
        for name in list(names):
            run_id = name.rsplit("_", 1)[-1]
            if not run_id.isdigit() or int(run_id) == self.run_id:
                continue
            run = connection.execute(
                sa.select(runs.c.status, runs.c.target_table).where(runs.c.id == int(run_id))
            ).first()
            # Under our lease no other run of this target is alive, whatever its row says (a killed
            # process leaves "running"); a running run of another target still needs its table.
            if run is None or run.status != "running" or run.target_table == self.tables.target.name:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        """Drop this run's work tables; quietly, they are only a cache of keys."""
        try:
            with self.engine.begin() as connection:
                for name in (self.seen, self.gone):
                    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        except sa.exc.DBAPIError as error:
            log.warning(
                "could not drop the work tables of run %s: %s",
                self.run_id,
                str(error.orig or error).strip().splitlines()[0],
            )

    # -- deciding ------------------------------------------------------------------------------

    def finish(self, mode: str, force: bool) -> int:
        """Decide and apply the deletions; return how many rows were marked or removed."""
        self._candidates()
        self._drop_outside()
        self._drop_found()
        # An index closed or deleted while the lookups ran made its documents look gone: ask again.
        self._drop_outside(resolve_scope(self.api, self.settings, self.retry))
        with self.engine.connect() as connection:
            confirmed = int(connection.exec_driver_sql(f"SELECT count(*) FROM {self.gone}").scalar_one())
        if not confirmed:
            return 0
        settings = self.settings.reconcile
        if confirmed > settings.delete_min_count and not force:
            live, limit = self._live(), settings.delete_max_fraction
            if confirmed > limit * live:
                raise DeletesRefused(
                    f"reconciliation would delete {confirmed} of {live} live rows in scope "
                    f"({confirmed / live:.1%}), more than RTARF_DELETE_MAX_FRACTION={limit:g} and more than "
                    f"RTARF_DELETE_MIN_COUNT={settings.delete_min_count}; nothing was deleted: check "
                    "RTARF_ES_INDEX, then repeat with force to delete them"
                )
        return self._apply(mode)

    def _in_scope(self, indices: IndexScope) -> sa.ColumnElement[bool]:
        target = self.tables.target
        return sa.and_(target.c.deleted_at.is_(None), self.scope.rows(target), indices.rows(target.c.es_index))

    def _candidates(self) -> None:
        """Build the table of live rows in scope that were not read."""
        target = self.tables.target
        self.indices = resolve_scope(self.api, self.settings, self.retry)
        # With RTARF_DELETE_VANISHED_INDICES=true, rows of any index stay candidates until _drop_outside
        # has told vanished indices the setting names from indices outside it; else only admitted ones.
        of_index = sa.true() if self.indices.include_vanished else self.indices.rows(target.c.es_index)
        unread = unread_keys(target, self.seen, sa.and_(self.scope.rows(target), of_index))
        with self.engine.begin() as connection:
            self.lease.fence(connection, self.fence)
            prepare_key_table(connection, self.seen)
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.gone}")  # a retried finish starts afresh
            # CREATE TABLE AS may scan in parallel, INSERT ... SELECT may not; the scope's bounds are
            # instants, rendered as literals because PostgreSQL takes no parameters in it.
            query = unread.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
            connection.exec_driver_sql(f"CREATE UNLOGGED TABLE {self.gone} AS {query}")
            connection.exec_driver_sql(f"ALTER TABLE {self.gone} ADD PRIMARY KEY (es_index, es_id)")

    def _live(self) -> int:
        """The live rows in the run's scope (the safety valve's measure)."""
        assert self.indices is not None
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(self.tables.target).where(self._in_scope(self.indices))
                ).scalar_one()
            )

    def _indices(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.exec_driver_sql(f"SELECT DISTINCT es_index FROM {self.gone} ORDER BY 1").scalars())

    def _drop_outside(self, fresh: IndexScope | None = None) -> None:
        """Drop candidates of indices outside the scope (`fresh`, or the one the candidates were built with):
        indices the setting does not name, and deleted ones unless RTARF_DELETE_VANISHED_INDICES=true."""
        scope = fresh or self.indices
        assert scope is not None
        names = self._indices()
        self.indices = scope.with_vanished(self.api, self.retry, names)
        vanished = sorted(self.indices.vanished & set(names))
        if vanished and fresh is None:
            log.info(
                "rows of %d deleted index(es) are %s: %s",
                len(vanished),
                "reconciled as deleted"
                if self.indices.include_vanished
                else "left alone (RTARF_DELETE_VANISHED_INDICES=false)",
                ", ".join(vanished[:5]),
            )
        outside = [name for name in names if not self.indices.admits(name)]
        if outside:
            with self.engine.begin() as connection:
                connection.execute(sa.text(f"DELETE FROM {self.gone} WHERE es_index = ANY(:names)"), {"names": outside})

    def _drop_found(self) -> None:
        """Drop every candidate the engine still has, by an ids lookup over the index setting."""
        for index in self._indices():
            after = ""
            while True:
                with self.engine.connect() as connection:
                    ids = list(
                        connection.execute(
                            sa.text(
                                f"SELECT es_id FROM {self.gone} WHERE es_index = :index AND es_id > :after "
                                "ORDER BY es_id LIMIT :limit"
                            ),
                            {"index": index, "after": after, "limit": LOOKUP_BATCH},
                        ).scalars()
                    )
                if not ids:
                    break
                found = self._call(partial(self._lookup, index, ids), "look up ids")
                with self.engine.begin() as connection:
                    self.lease.fence(connection, self.fence)  # the lookups of a large scope take a while
                    if found:
                        connection.execute(
                            sa.text(f"DELETE FROM {self.gone} WHERE es_index = :index AND es_id = ANY(:ids)"),
                            {"index": index, "ids": sorted(found)},
                        )
                after = ids[-1]

    def _lookup(self, index: str, ids: list[str]) -> set[str]:
        """The ids among `ids` that the index setting still has in `index`.

        Without the pipeline's query, on purpose: a document that no longer matches it was not
        read, but it exists, so it is out of scope, never deleted (source/filters.py).
        """
        body = {
            "size": len(ids),
            "_source": False,
            "track_total_hits": False,
            "query": {"bool": {"filter": [{"ids": {"values": ids}}, {"term": {"_index": index}}]}},
        }
        answer = self.api.search(body, index=self.settings.es_index)
        check_complete(answer, "look up ids")
        return {hit["_id"] for hit in answer["hits"]["hits"] if hit.get("_index") == index}

    def _call(self, call: Callable[[], T], what: str) -> T:
        return with_retry(call, self.retry, what)

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, mode: str) -> int:
        """Mark (soft) or remove (hard) the confirmed rows, fenced by the lease; return how many."""
        match = "t.es_index = g.es_index AND t.es_id = g.es_id"
        with self.engine.begin() as connection:
            self.lease.fence(connection, self.fence)
            target = connection.dialect.identifier_preparer.format_table(self.tables.target)
            if mode == "hard":
                statement = f"DELETE FROM {target} t USING {self.gone} g WHERE {match}"
            else:
                # last_synced_at moves too: a reader following it sees the deletion.
                statement = (
                    f"UPDATE {target} t SET deleted_at = now(), last_synced_at = now() "
                    f"FROM {self.gone} g WHERE {match} AND t.deleted_at IS NULL"
                )
            return int(connection.exec_driver_sql(statement).rowcount or 0)
