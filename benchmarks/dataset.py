"""The benchmark's events: loaded into one OpenSearch index, and kept as rows on disk.

While the sample events are bulk-loaded, each event's id, timestamp and exact
`_source` JSON are also written to a rows file, which the write ceiling
copies into PostgreSQL, and the size of every `_source` is kept, for MB/s.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Iterator

from rtarf_sync.engine.target.documents import EventRow, parse_instant
from rtarf_sync.sample import bulk_payload, load_events, make_event
from tests.infra.harness.http import EngineHttp


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Dataset:
    """Sample events in `index` (one shard, no automatic refresh) and their rows in `rows_file`."""

    def __init__(self, http: EngineHttp, index: str, rows_file: Path) -> None:
        self.http, self.index, self.rows_file = http, index, rows_file
        self.sizes = array("I")  # bytes of each event's _source JSON, by event number

    @property
    def loaded(self) -> int:
        return len(self.sizes)

    def source_bytes(self, count: int | None = None) -> int:
        """Bytes of _source JSON of the first `count` events (all by default)."""
        return sum(self.sizes[: self.loaded if count is None else count])

    def create(self) -> None:
        """(Re)create the index: one shard, no replicas, refresh_interval -1."""
        self.http.delete_index(self.index)
        self.http.create_index(self.index, shards=1)
        self.rows_file.write_text("")

    def _post(self, body: str) -> dict[str, Any]:
        lines = body.rstrip("\n").split("\n")
        with self.rows_file.open("a", encoding="utf-8") as rows:
            for action, source in zip(lines[0::2], lines[1::2], strict=True):
                es_id = json.loads(action)["index"]["_id"]
                rows.write(f"{es_id}\t{json.loads(source)['@timestamp']}\t{source}\n")
                self.sizes.append(len(source.encode("utf-8")))
        return self.bulk(body)

    def bulk(self, body: str, attempts: int = 3) -> dict[str, Any]:
        """POST one bulk body; retry a dropped connection (every item has an _id, so a retry is harmless)."""
        for attempt in range(1, attempts + 1):
            try:
                return self.http.bulk(body)
            except (OSError, http.client.HTTPException) as error:
                if attempt == attempts:
                    raise
                say(f"bulk request failed ({type(error).__name__}: {error}); retrying")
                time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def load(self, count: int, batch: int = 2000) -> None:
        """Bulk-load the next `count` events, then refresh; report progress about every 10%."""
        started, first, step = time.monotonic(), self.loaded, max(count // 10, batch)
        shown = [0]

        def progress(done: int, total: int) -> None:
            if done - shown[0] >= step or done == total:
                shown[0] = done
                rate = done / max(time.monotonic() - started, 1e-9)
                say(f"loaded {first + done:,} of {first + total:,} events ({rate:,.0f} events/s)")

        load_events(self._post, self.index, count, first=first, batch=batch, progress=progress)
        self.http.refresh(self.index)
        searchable = self.http.count(self.index)
        if searchable != self.loaded:
            raise RuntimeError(f"{self.index} holds {searchable} searchable events, expected {self.loaded}")

    def change(self, every: int = 10, batch: int = 2000) -> int:
        """Re-index every `every`-th event with changed content (a new _seq_no); return how many."""
        numbers = range(0, self.loaded, every)
        for offset in range(0, len(numbers), batch):
            events = []
            for number in numbers[offset : offset + batch]:
                event = make_event(number)
                event["rtarf"]["case_id"] = f"CASE-{number:08d}"
                event["tags"] = [*event["tags"], "reviewed"]
                events.append(event)
                self.sizes[number] = len(json.dumps(event, separators=(",", ":")).encode("utf-8"))
            answer = self.bulk(bulk_payload(self.index, events))
            if answer.get("errors"):
                raise RuntimeError(f"re-indexing changed events failed: {json.dumps(answer)[:500]}")
        self.http.refresh(self.index)
        return len(numbers)


def row_pages(rows_file: Path, index: str, size: int) -> Iterator[list[EventRow]]:
    """The rows file (id, timestamp, source per line) as pages of target rows, event number as seq_no."""
    page: list[EventRow] = []
    with rows_file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            es_id, stamp, source = line.rstrip("\n").split("\t", 2)
            moment = parse_instant(stamp)
            assert moment is not None
            page.append(EventRow(index, es_id, moment, source.encode(), number, 1))
            if len(page) == size:
                yield page
                page = []
    if page:
        yield page
