"""When the worker's event loop holds a request back and when it hands it to a thread (closing after or not)."""

from __future__ import annotations

import pytest

from rtarf_sync.server.http_worker import (
    BODY_LIMIT,
    READY,
    READY_CLOSE,
    WAIT,
    expects_continue,
    is_probe,
    request_state,
    without_expect,
)

HEAD = b"POST /scheduler/trigger HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"


@pytest.mark.parametrize(
    ("buffer", "state"),
    [
        (b"GET /healthz HTTP/1.1\r\nHo", WAIT),  # head still arriving (slowloris)
        (HEAD, WAIT),  # body announced, not here yet: no thread may wait for it
        (HEAD + b"{", WAIT),
        (HEAD + b"{}", READY),
        (HEAD + b"{}{}", READY_CLOSE),  # bytes past the body are never read as a request
        (b"GET / HTTP/1.1\r\n\r\n", READY),
        (b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", READY_CLOSE),
        (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (BODY_LIMIT + 1), READY_CLOSE),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", WAIT),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", READY_CLOSE),
        (b"GET /" + b"a" * 70_000, READY_CLOSE),  # a head past the limit: gunicorn answers 400
    ],
)
def test_request_state(buffer: bytes, state: str) -> None:
    assert request_state(buffer) == state


def test_expect_100_continue_is_seen_and_removed_once_answered() -> None:
    asked = HEAD.replace(b"Host: x\r\n", b"Host: x\r\nExpect: 100-continue\r\n")
    assert expects_continue(asked) and not expects_continue(HEAD) and not expects_continue(b"GET / HTTP/1.1\r\n")
    assert without_expect(asked + b"{}") == HEAD + b"{}"


def test_only_liveness_reads_take_the_probe_threads() -> None:
    assert is_probe(b"GET /healthz HTTP/1.1\r\n") and is_probe(b"HEAD /livez?x=1 HTTP/1.1\r\n")
    assert not is_probe(b"GET /readyz HTTP/1.1\r\n") and not is_probe(b"POST /healthz HTTP/1.1\r\n")
