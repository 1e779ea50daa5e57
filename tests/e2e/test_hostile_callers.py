"""No client can hold the service: real gunicorn, raw sockets and a shared keep-alive session.

Late bodies on every status code, bytes after an answer, slow heads, idle
keep-alive connections: /healthz and /scheduler/status keep answering, and
/readyz answers within its deadline when the engine does not.
"""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Callable, Iterator

import pytest
import requests
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.hostile_callers import connect, drip, head, late_body, read_response, slow_head
from tests.infra.support import load_sample, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "callers-test-token-0123456789"
HANG_GUARD = 10  # seconds: a request the service never answers fails the test instead of hanging it


@pytest.fixture(scope="module")
def server(
    opensearch: EngineHttp, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    """One gunicorn for the module, with a token (for the 401s) and a small index."""
    suffix = uuid.uuid4().hex[:8]
    index = f"rtarf-callers-{suffix}"
    load_sample(opensearch, index, 20)
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": opensearch.url,
        "RTARF_ES_INDEX": index,
        "RTARF_TABLE": f"callers_{suffix}",
        "RTARF_SOURCE_ENGINE": "opensearch",
        "RTARF_API_TOKEN": TOKEN,
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_TRIGGER_DEBOUNCE_SECONDS": "0",
    }
    process = GunicornProcess(tmp_path_factory.mktemp("callers"), env)
    try:
        yield process.start()
    finally:
        process.close()
        opensearch.delete_index(index)  # the shared node has a shard limit


def _answers(server: GunicornProcess, path: str = "/healthz") -> int:
    return requests.get(f"{server.url}{path}", timeout=HANG_GUARD).status_code


def test_bodies_that_arrive_after_the_head_hold_no_thread_on_any_status(server: GunicornProcess) -> None:
    # The old worker answered these before their body came; the body then woke a thread that waited forever
    # for a next request on the idle connection. Two of each: more than the service has threads.
    held: list[socket.socket] = []
    seen: list[int] = []
    calls = [
        ("POST", "/scheduler/trigger", TOKEN),
        ("POST", "/scheduler/trigger", None),
        ("POST", "/no-such-route", TOKEN),
        ("POST", "/healthz", TOKEN),
    ]
    for method, path, token in calls * 2:
        sock, status = late_body(server.port, method, path, token=token)
        held.append(sock)
        seen.append(status)
    assert (
        requests.post(
            f"{server.url}/scheduler/stop", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HANG_GUARD
        ).status_code
        == 200
    )
    for _ in range(2):
        sock, status = late_body(server.port, "POST", "/scheduler/trigger", token=TOKEN)
        held.append(sock)
        seen.append(status)
    assert sorted(set(seen)) == [202, 401, 404, 405, 409]
    assert _answers(server) == 200
    assert _answers(server, "/scheduler/status") == 200
    assert (
        requests.post(
            f"{server.url}/scheduler/start", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HANG_GUARD
        ).status_code
        == 200
    )
    for sock in held:
        sock.close()


def test_a_keep_alive_session_shared_by_ten_threads_gets_every_answer(server: GunicornProcess) -> None:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=10))
    statuses: list[int | str] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(5):
            try:
                status: int | str = session.post(
                    f"{server.url}/scheduler/trigger",
                    json={},
                    timeout=HANG_GUARD,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=caller) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=HANG_GUARD * 6)
    assert statuses == [202] * 50
    assert _answers(server) == 200
    session.close()


def test_bytes_after_an_answer_close_the_connection_and_hold_nothing(server: GunicornProcess) -> None:
    held = []
    for _ in range(8):
        sock = connect(server.port)
        sock.sendall(head("POST", "/scheduler/trigger", 2, TOKEN) + b"{}" + b"{}\r\n")  # 5 bytes past the body
        status, _ = read_response(sock)
        assert status == 202
        sock.settimeout(HANG_GUARD)
        assert sock.recv(1) == b""  # closed: the extra bytes are never read as a request
        held.append(sock)
    assert _answers(server) == 200
    assert _answers(server, "/scheduler/status") == 200


def test_expect_100_continue_gets_its_interim_answer_before_the_body(server: GunicornProcess) -> None:
    sock = connect(server.port)
    sock.sendall(head("POST", "/scheduler/trigger", 2, TOKEN, extra="Expect: 100-continue\r\n"))
    sock.settimeout(HANG_GUARD)
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"{}")
    assert read_response(sock)[0] == 202
    sock.close()


def test_slow_heads_and_idle_connections_leave_the_service_answering(server: GunicornProcess) -> None:
    idle = []
    for _ in range(200):  # each asks once, then keeps its connection open and says nothing
        sock = connect(server.port)
        sock.sendall(head("GET", "/healthz"))
        assert read_response(sock)[0] == 200
        idle.append(sock)
    slow = [slow_head(server.port) for _ in range(20)]
    dripping = threading.Thread(target=drip, args=(slow, 3.0), daemon=True)
    dripping.start()
    assert _answers(server) == 200
    assert _answers(server, "/livez") == 200
    assert _answers(server, "/scheduler/status") == 200
    dripping.join(timeout=HANG_GUARD)

    def dropped(sock: socket.socket) -> bool:
        sock.settimeout(0.1)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    # A head still incomplete at the read deadline is dropped, so slow clients cannot pile up.
    wait_for(lambda: all(dropped(sock) for sock, _ in slow), timeout=60, what="the slow heads dropped")
    for sock in idle + [sock for sock, _ in slow]:
        sock.close()


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps built by a test; their schedulers are shut down afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        scheduler_of(app).shutdown(timeout=20)


def test_readyz_answers_within_its_deadline_and_probes_share_one_check(
    make_settings: Callable[..., Settings], apps: list[Flask]
) -> None:
    # An engine that accepts connections and never answers: the client's own timeout is far longer.
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    app = create_app(
        make_settings(
            RTARF_ES_URL=f"http://127.0.0.1:{port}",
            RTARF_SOURCE_ENGINE="elasticsearch",
            RTARF_SYNC_MAX_RETRIES=0,
            RTARF_ES_REQUEST_TIMEOUT_SECONDS=120,
        )
    )
    apps.append(app)
    answers: list[dict[str, object]] = []

    def probe() -> None:
        response = app.test_client().get("/readyz")
        answers.append({"status": response.status_code, **response.get_json()})

    probes = [threading.Thread(target=probe, daemon=True) for _ in range(8)]
    for thread in probes:
        thread.start()
    for thread in probes:
        thread.join(timeout=HANG_GUARD * 2)
    assert len(answers) == 8
    assert {answer["status"] for answer in answers} == {503}
    assert all(answer["checks"]["engine"] == "no answer within 5 s" for answer in answers)  # type: ignore[index]  # each is a JSON object
    silent.settimeout(1)
    accepted: list[socket.socket] = []
    try:
        while len(accepted) < 10:
            accepted.append(silent.accept()[0])
    except TimeoutError:
        pass
    assert len(accepted) == 1  # eight probes, one check
    for sock in accepted:
        sock.close()
    silent.close()
