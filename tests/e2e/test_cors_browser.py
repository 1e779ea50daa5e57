"""Origins in a real headless Chromium against gunicorn: the page's own actions, a listed dashboard, a foreign page.

The service has no token (the case where a foreign page's POST would
otherwise act) and lists one dashboard origin, http://127.0.0.1:<port>, served
by a small static server; the same server reached as http://localhost:<port>
is a foreign origin. The interval job's state (GET /scheduler/status) shows
whether a POST /scheduler/stop or /start acted.
"""

from __future__ import annotations

import functools
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.infra.browser import start_browser
from tests.infra.esserver import EsProtocolServer
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.support import load_sample, wait_for

pytestmark = pytest.mark.e2e

FETCH = """
const [url, init, done] = arguments;
fetch(url, init).then(r => r.text().then(body => done({status: r.status, body: body})))
                .catch(e => done({error: String(e)}));
"""
JSON_WITH_TOKEN = {
    "method": "POST",
    "headers": {"Authorization": "Bearer dashboard-token", "Content-Type": "application/json"},
    "body": "{}",
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A static server of an empty page, on a port of its own; yields the port."""
    root = tmp_path_factory.mktemp("dashboard")
    (root / "index.html").write_text("<!doctype html><title>dashboard</title><p>dashboard</p>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, es_server: EsProtocolServer, database_url: str, dashboard: int
) -> Iterator[GunicornProcess]:
    """gunicorn without a token, listing the dashboard's origin; its first run done."""
    engine = EngineHttp(es_server.url, "elasticsearch")
    index = f"rtarf-events-cors-{uuid.uuid4().hex[:8]}"
    load_sample(engine, index, 10)
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_ES_INDEX": index,
        "RTARF_TABLE": f"cors_{uuid.uuid4().hex[:10]}",
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
        "RTARF_VERIFY_INTERVAL_SECONDS": "0",
        "RTARF_CORS_ORIGINS": f"http://127.0.0.1:{dashboard}",
    }
    process = GunicornProcess(tmp_path_factory.mktemp("cors"), env)
    try:
        process.start()
        wait_for(
            lambda: process.get("/scheduler/status").json()["total_syncs"] == 1,
            timeout=90,
            what="the first scheduled run",
        )
        yield process
    finally:
        process.close()
        engine.delete_index(index)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def running(service: GunicornProcess) -> bool:
    """Whether the interval job is scheduled."""
    return bool(service.get("/scheduler/status").json()["is_running"])


def fetch(browser: WebDriver, page: str, url: str, init: dict[str, Any]) -> dict[str, Any]:
    """Open `page`, run fetch(url, init) in it and return {status, body} or {error}."""
    browser.get(page)
    return dict(browser.execute_async_script(FETCH, url, init))


def test_the_pages_own_buttons_still_act(browser: WebDriver, service: GunicornProcess) -> None:
    browser.get(f"{service.url}/?refresh=1")
    for label, message, state in (("Stop", "Scheduler stopped", False), ("Start", "Scheduler started", True)):
        browser.execute_script("document.getElementById('action-message').textContent = ''")
        browser.find_element(By.XPATH, f"//button[@data-action][normalize-space()='{label}']").click()
        wait_for(
            lambda expected=message: browser.find_element(By.ID, "action-message").text == expected,
            timeout=60,
            what=f"the answer to {label}",
        )
        assert running(service) is state


def test_a_listed_dashboard_fetches_with_a_token_and_a_json_body(
    browser: WebDriver, service: GunicornProcess, dashboard: int
) -> None:
    assert running(service) is True
    answer = fetch(browser, f"http://127.0.0.1:{dashboard}/", f"{service.url}/scheduler/stop", JSON_WITH_TOKEN)
    assert answer.get("status") == 200, answer
    assert "Scheduler stopped" in answer["body"]
    assert running(service) is False
    status = fetch(browser, f"http://127.0.0.1:{dashboard}/", f"{service.url}/scheduler/status", {})
    assert status.get("status") == 200, status
    assert service.post("/scheduler/start").status_code == 200


def test_a_foreign_page_can_neither_act_nor_read(browser: WebDriver, service: GunicornProcess, dashboard: int) -> None:
    assert running(service) is True
    foreign = f"http://localhost:{dashboard}/"
    # What a hostile page can send without a preflight: a "simple" POST, no body or a text body.
    for init in ({"method": "POST", "mode": "no-cors"}, {"method": "POST", "mode": "no-cors", "body": "{}"}):
        fetch(browser, foreign, f"{service.url}/scheduler/stop", init)
    # With a token and a JSON body the browser asks first, and the answer lets nothing through.
    refused = fetch(browser, foreign, f"{service.url}/scheduler/stop", JSON_WITH_TOKEN)
    assert "error" in refused, refused
    assert running(service) is True  # without the origin check the simple POSTs would have stopped it
