"""The status page in a real headless Chromium, against gunicorn, PostgreSQL and the OpenSearch node.

One gunicorn (with an API token) and one browser serve every test here, in
file order: the page after the first run, the escaping of hostile text, the
actions with and without the token, a run that fails, a sync already running,
the screenshots, and last the banner when the service stops answering.
The index has two documents whose `_id` and bad cursor value are HTML, so
they become dead letters whose id and reason the page must show as typed.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from rtarf_sync.sample import load_events, make_event
from tests.infra.browser import color_scheme, console_errors, low_contrast, screenshot, start_browser
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs
from tests.infra.support import runs_of, service_env, target_locked, waiting_service_backends, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "page-test-token-0123"
EVENTS = 40
SCRIPT = "<script>window.__xss = 1</script>"
IMG = '"><img src=x onerror="window.__xss = 2">'
# Each hostile document's _id is one payload and its unparseable @timestamp the other.
HOSTILE = {SCRIPT: IMG, IMG: SCRIPT}
# STATUS_PAGE_SCREENSHOTS=docs (make screenshot) keeps the PNGs; otherwise they go to a temporary folder.
SCREENSHOTS = os.environ.get("STATUS_PAGE_SCREENSHOTS")
TEXT = (
    "h1, h2, .target, .headline, .card dt, .card .value, .card .detail, button:not(:disabled), .message, "
    ".chart-label, figcaption, .panel .summary, .panel .details li, th, td, footer"
)


@pytest.fixture(scope="module")
def index(opensearch: EngineHttp) -> Iterator[str]:
    """Recent sample events plus the two hostile documents, in an index that accepts malformed dates."""
    name = f"rtarf-events-page-{uuid.uuid4().hex[:8]}"
    opensearch.call(
        "PUT",
        f"/{name}",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"@timestamp": {"type": "date", "ignore_malformed": True}}},
        },
    )
    load_events(
        opensearch.bulk, name, EVENTS, start=datetime.now(timezone.utc) - timedelta(minutes=20), spacing_ms=20_000
    )
    docs = {
        doc_id: {**make_event(900 + number), "@timestamp": value}
        for number, (doc_id, value) in enumerate(HOSTILE.items())
    }
    assert index_docs(opensearch, name, docs)["errors"] is False
    opensearch.refresh(name)
    yield name
    opensearch.delete_index(name)


@pytest.fixture(scope="module")
def table() -> str:
    """The target table of this module's service."""
    return f"page_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, opensearch: EngineHttp, database_url: str, index: str, table: str
) -> Iterator[GunicornProcess]:
    """gunicorn with a token; its interval job runs once at boot, then every hour."""
    env = service_env(
        database_url,
        opensearch,
        index,
        table,
        **{
            "RTARF_API_TOKEN": TOKEN,
            "RTARF_SYNC_MAX_RETRIES": "0",
        },
    )
    process = GunicornProcess(tmp_path_factory.mktemp("page"), env)
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


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the whole module."""
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver, server: GunicornProcess) -> WebDriver:
    """The status page, freshly loaded, refreshing every second, with no token kept."""
    browser.get(f"{server.url}/?refresh=1")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    return browser


def text_of(driver: WebDriver, element_id: str) -> str:
    """The visible text of one element."""
    return driver.find_element(By.ID, element_id).text


def chart_marks(driver: WebDriver) -> list[str]:
    """The run ids of the chart's marks, oldest first."""
    return [
        mark.get_attribute("data-run-id") or ""
        for mark in driver.find_elements(By.CSS_SELECTOR, "#chart-marks > g.mark")
    ]


def refreshed(driver: WebDriver) -> None:
    """Wait until the page's script has redrawn it from /scheduler/overview at least once more."""
    before = text_of(driver, "updated")
    wait_for(lambda: text_of(driver, "updated") != before, timeout=30, what="a refresh of the page")


def click(driver: WebDriver, label: str) -> None:
    """Click the action button whose text is `label`."""
    driver.find_element(By.XPATH, f"//button[@data-action][normalize-space()='{label}']").click()


def message_after(driver: WebDriver, label: str, token: str | None = None, timeout: float = 60) -> str:
    """Click an action (typing `token` into the token form if given) and return the message it ends with."""
    driver.execute_script("document.getElementById('action-message').textContent = ''")
    click(driver, label)
    if token is not None:
        form = driver.find_element(By.ID, "token-form")
        wait_for(form.is_displayed, what="the token form")
        driver.find_element(By.ID, "token-input").send_keys(token)
        driver.find_element(By.ID, "token-submit").click()

    def settled() -> str:
        message = text_of(driver, "action-message")
        return "" if not message or "waiting for the service" in message else message

    return str(wait_for(settled, timeout=timeout, what=f"the answer to {label}"))


def route_missing(server: GunicornProcess, method: str, path: str) -> bool:
    """True when this version of the service has no such route."""
    headers = {"Authorization": f"Bearer {TOKEN}"}  # else a POST answers 401 before routing
    return requests.request(method, f"{server.url}{path}", timeout=30, headers=headers).status_code in (404, 405)


def test_the_page_answers_at_a_glance_after_a_sync(
    page: WebDriver, server: GunicornProcess, table: str, db_engine: sa.Engine
) -> None:
    answer = server.get("/")
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    missing = server.get("/no/such/page")
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "application/json")

    assert page.find_element(By.TAG_NAME, "h1").text == "RTARF Event Sync"
    assert text_of(page, "headline").startswith("Check:")  # two documents were set aside
    assert "dead letters: 2 unresolved" in text_of(page, "headline")
    state = page.find_element(By.ID, "card-state").text
    assert "running" in state and "next run" in state
    last_run = page.find_element(By.ID, "card-last_run").text
    assert "partial" in last_run
    assert f"{EVENTS + 2} processed, {EVENTS} inserted, 0 updated, 0 unchanged, 2 set aside" in last_run
    lag = page.find_element(By.ID, "card-lag").find_element(By.CLASS_NAME, "value").text
    assert lag.endswith(" s") or " min" in lag  # the newest sample event is about seven minutes old
    assert "100.0%" in page.find_element(By.ID, "card-success_rate").text
    assert "2 unresolved" in text_of(page, "panel-dead_letters")
    assert "rtarf_event_sync" in text_of(page, "panel-jobs")
    webhooks = text_of(page, "panel-webhooks")
    assert ("not available" in webhooks) == route_missing(server, "GET", "/scheduler/webhooks")
    verification = text_of(page, "panel-verification")
    assert ("not available" in verification) == route_missing(server, "POST", "/scheduler/verify")
    assert chart_marks(page) == [str(run["id"]) for run in runs_of(db_engine, table)]


def test_hostile_ids_and_reasons_show_as_typed_and_never_run(page: WebDriver) -> None:
    def check() -> None:
        assert console_errors(page) == []  # nothing failed to load, nothing was blocked, no script error
        assert page.execute_script("return window.__xss") is None
        assert page.find_elements(By.CSS_SELECTOR, "main img, main script") == []
        cells = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in page.find_elements(By.CSS_SELECTOR, "#panel-dead_letters tbody tr")
        ]
        shown = {row[2]: row[3] for row in cells}
        assert set(shown) == {SCRIPT, IMG}
        for doc_id, value in HOSTILE.items():
            assert shown[doc_id] == f"cursor field @timestamp is not a date: {value!r}"

    check()  # as the server rendered it
    refreshed(page)
    check()  # as the script redrew it


def test_actions_ask_for_the_token_refuse_a_wrong_one_and_run_with_the_right_one(
    page: WebDriver, server: GunicornProcess, table: str, db_engine: sa.Engine
) -> None:
    runs_before = len(runs_of(db_engine, table))
    click(page, "Sync now")
    form = page.find_element(By.ID, "token-form")
    wait_for(form.is_displayed, what="the token form")
    assert "Enter the API token" in text_of(page, "action-message")
    assert len(runs_of(db_engine, table)) == runs_before  # nothing was sent without a token
    page.find_element(By.ID, "token-cancel").click()

    refused = message_after(page, "Sync now", token="not-the-token")
    assert refused.startswith("The token was refused (401)")
    assert "Authorization: Bearer" in refused
    assert page.find_element(By.ID, "token-form").is_displayed()  # ready for another try
    assert len(runs_of(db_engine, table)) == runs_before

    page.find_element(By.ID, "token-input").send_keys(TOKEN)
    page.find_element(By.ID, "token-submit").click()  # the refused action is sent again
    done = wait_for(
        lambda: "Manual sync completed" in text_of(page, "action-message") and text_of(page, "action-message"),
        timeout=60,
        what="the manual sync",
    )
    assert "processed" in done
    assert page.execute_script("return sessionStorage.getItem('rtarf-sync-token')") == TOKEN
    assert page.execute_script("return document.cookie") == ""
    runs = runs_of(db_engine, table)
    assert len(runs) == runs_before + 1
    wait_for(
        lambda: chart_marks(page) == [str(run["id"]) for run in runs], timeout=30, what="the chart to show the new run"
    )

    assert message_after(page, "Stop") == "Scheduler stopped"
    wait_for(lambda: "paused" in text_of(page, "card-state"), timeout=30, what="the state to show paused")
    assert message_after(page, "Start") == "Scheduler started"  # it runs once at once, like a boot
    wait_for(lambda: "running" in text_of(page, "card-state"), timeout=30, what="the state to show running")


def test_a_failed_run_is_marked_in_the_chart(
    page: WebDriver, server: GunicornProcess, opensearch: EngineHttp, index: str, table: str, db_engine: sa.Engine
) -> None:
    wait_for(
        lambda: not server.get("/scheduler/status").json()["sync_in_progress"],
        timeout=60,
        what="the run the start began",
    )
    opensearch.call("POST", f"/{index}/_close")
    try:
        failed = server.post("/scheduler/sync-now", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        opensearch.call("POST", f"/{index}/_open")
    assert failed.status_code >= 500 and failed.json()["result"]["status"] == "failed"
    run_id = str(failed.json()["result"]["run_id"])

    def failed_mark() -> Any:
        marks = page.find_elements(By.CSS_SELECTOR, f'#chart-marks > g.mark[data-run-id="{run_id}"]')
        return marks and "status-failed" in (marks[0].get_attribute("class") or "") and marks[0]

    mark = wait_for(failed_mark, timeout=30, what="the failed run's mark")
    assert mark.find_elements(By.CSS_SELECTOR, "rect.failed-band")
    assert text_of(page, "headline").startswith("Attention:")
    assert "failed" in page.find_element(By.ID, "card-last_run").text
    assert chart_marks(page) == [str(run["id"]) for run in runs_of(db_engine, table)]


def test_a_second_sync_while_one_runs_says_a_sync_is_already_running(
    page: WebDriver, server: GunicornProcess, opensearch: EngineHttp, index: str, table: str, db_engine: sa.Engine
) -> None:
    opensearch.call("GET", f"/_cluster/health/{index}?wait_for_status=yellow&timeout=60s")  # reopened
    load_events(opensearch.bulk, index, 5, first=EVENTS, start=datetime.now(timezone.utc) - timedelta(minutes=1))
    opensearch.refresh(index)
    page.execute_script(f"sessionStorage.setItem('rtarf-sync-token', '{TOKEN}')")
    answers: list[requests.Response] = []
    with target_locked(db_engine, table):  # the run waits to write its page until the block ends
        holder = threading.Thread(
            target=lambda: answers.append(
                server.post("/scheduler/sync-now", headers={"Authorization": f"Bearer {TOKEN}"})
            )
        )
        holder.start()
        wait_for(lambda: waiting_service_backends(db_engine) >= 1, timeout=60, what="the run to wait on the lock")
        busy = message_after(page, "Sync now")
    holder.join(60)
    assert busy.startswith("A sync is already running (409)")
    assert answers and answers[0].status_code == 200


def _more_history(server: GunicornProcess, opensearch: EngineHttp, index: str) -> None:
    """A few more real runs of different sizes, so the README's chart shows a history."""
    first = EVENTS + 5
    for size in (120, 40, 300, 80, 500, 60, 220, 30, 400, 150, 90, 260):
        start = datetime.now(timezone.utc) - timedelta(minutes=1, milliseconds=first * 100)  # lands in the last minute
        load_events(opensearch.bulk, index, size, first=first, start=start, spacing_ms=100)
        opensearch.refresh(index)
        first += size
        assert server.post("/scheduler/sync-now", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_screenshots_in_light_dark_and_phone_width_all_readable(
    page: WebDriver, server: GunicornProcess, opensearch: EngineHttp, index: str, tmp_path: Path
) -> None:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    if SCREENSHOTS:
        _more_history(server, opensearch, index)
    refreshed(page)
    shots = {
        "status-page.png": ("light", 1280),
        "status-page-dark.png": ("dark", 1280),
        "status-page-phone.png": ("light", 390),
    }
    try:
        for name, (scheme, width) in shots.items():
            color_scheme(page, scheme)
            screenshot(page, str(folder / name), width)
            assert (folder / name).stat().st_size > 10_000
            overflow = page.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name}: the page is {overflow}px wider than the window"
            assert low_contrast(page, TEXT) == [], f"{name}: text below a contrast of 4.5:1"
    finally:
        color_scheme(page, "light")
        page.set_window_size(1280, 1000)


def test_a_banner_says_when_the_service_stops_answering(page: WebDriver, server: GunicornProcess) -> None:
    banner = page.find_element(By.ID, "offline-banner")
    assert not banner.is_displayed()
    code, _ = server.terminate(timeout=30)
    assert code == 0
    wait_for(banner.is_displayed, timeout=30, what="the offline banner")
    assert "The service is not answering." in banner.text
