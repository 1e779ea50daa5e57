"""The webhook notifier: turns finished runs into outbox messages and delivers them in the background.

    scheduler.add_result_listener(notifier.on_result)   # never blocks: a queue append
    notifier.publish("verify.drift", {"verify": result}) # same, for any other feature
    notifier.add_delivery_listener(callback)             # callback(event_type, "delivered"|"failed"|"abandoned")

One daemon thread per process does everything that touches the network or
the database: it stores queued notifications in the outbox first, then claims
due messages one at a time and sends them. It is a thread of its own, not an
APScheduler job, because the scheduler's executor has a single worker that a
sync run occupies for minutes, and a hanging receiver must never hold up a
run (nor a run hold up an alert about the previous one). The thread wakes at
once when this process queues something, and otherwise when the earliest
waiting message is due, at most `POLL_SECONDS` later (messages stored by other
replicas, or left by a replica that died).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SKIPPED, SUCCESS, SyncResult
from rtarf_sync.notify.delivery import DELIVERED, GONE, Sender, retry_delay
from rtarf_sync.notify.endpoints import configured_endpoints
from rtarf_sync.notify.events import run_from_result, sync_event_types
from rtarf_sync.notify.outbox import Claimed, Outbox

logger = logging.getLogger("rtarf_sync.webhooks")

POLL_SECONDS = 2.0
CLAIM_MARGIN_SECONDS = 30.0
STORE_RETRY_SECONDS = 5.0
DeliveryListener = Callable[[str, str], None]
RunLookup = Callable[[int], "dict[str, Any] | None"]


class Notifier:
    """Queue, store and deliver webhook messages for one target table."""

    def __init__(
        self,
        settings: Settings,
        engine: Callable[[], sa.Engine],
        run_lookup: RunLookup,
        prepare: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.outbox = Outbox(settings, engine)
        self.sender = Sender(settings.webhooks.timeout_seconds)
        self._run_lookup = run_lookup
        self._prepare = prepare  # creates the tables before the first pass
        self._queue: deque[tuple[str, Any]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._store_lock = threading.Lock()  # close() may store while the thread is still in an attempt
        self._listeners: list[DeliveryListener] = []
        self._unrecorded_failure = False  # a failed run the history table never saw (database down)

    @property
    def enabled(self) -> bool:
        """True when RTARF_WEBHOOK_URLS names at least one endpoint."""
        return bool(self.settings.webhooks.urls)

    # -- what other parts call -------------------------------------------------------

    def on_result(self, result: SyncResult) -> None:
        """Result listener: queue the run for notification; returns at once, never raises."""
        if self.enabled and result.status != SKIPPED:
            self._queue.append(("run", result))
            self._wake.set()

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue any event (e.g. "verify.drift", {"verify": result}); returns at once."""
        if self.outbox.wanted(event_type):
            self._queue.append(("event", (event_type, data)))
            self._wake.set()

    def add_delivery_listener(self, listener: DeliveryListener) -> None:
        """Call `listener(event_type, result)` after every attempt: delivered, failed (will retry) or abandoned."""
        self._listeners.append(listener)

    def endpoints(self) -> list[dict[str, Any]]:
        """The configured endpoints, masked, with whether a 410 disabled them."""
        disabled = self.outbox.disabled() if self.enabled else {}
        return [
            {
                "url": endpoint.masked,
                "events": list(self.settings.webhooks.events),
                "disabled": endpoint.key in disabled,
                "disabled_reason": disabled.get(endpoint.key),
            }
            for endpoint in configured_endpoints(self.settings.webhooks)
        ]

    # -- the background thread -------------------------------------------------------

    def start(self) -> bool:
        """Start the delivery thread (once, after any fork); False if there is nothing to deliver to."""
        with self._start_lock:
            if not self.enabled or self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._loop, name="rtarf-webhooks", daemon=True)
            self._thread.start()
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current attempt; store what is still queued so nothing is lost."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._queue:
            self._store_queued()

    def _loop(self) -> None:
        logger.info("Webhook delivery started for %d endpoint(s)", len(self.settings.webhooks.urls))
        while not self._stop.is_set():
            self._wake.clear()
            pause = POLL_SECONDS
            try:
                self._prepare()
                pause = STORE_RETRY_SECONDS if not self._store_queued() else pause
                self._deliver_due()
                due = self.outbox.seconds_to_next()
                pause = min(pause, due) if due is not None else pause
            except Exception as error:  # noqa: BLE001 - the thread must outlive a database outage
                logger.warning("Webhook delivery pass failed: %s", str(error).splitlines()[0][:300])
                pause = STORE_RETRY_SECONDS
            self._wake.wait(max(0.01, pause))

    def _store_queued(self) -> bool:
        """Move queued notifications into the outbox, oldest first; False if the database refused."""
        with self._store_lock:
            return self._store_queued_locked()

    def _store_queued_locked(self) -> bool:
        while self._queue:
            kind, item = self._queue[0]
            try:
                self._store_run(item) if kind == "run" else self.outbox.enqueue(*item)
            except Exception as error:  # noqa: BLE001 - kept queued and retried; a sync never sees this
                logger.warning("Could not store a webhook message yet: %s", str(error).splitlines()[0][:300])
                return False
            self._queue.popleft()
        return True

    def _store_run(self, result: SyncResult) -> None:
        after_failure = self._after_failure(result)
        run = self._run_lookup(result.run_id) if result.run_id is not None else None
        for event_type in sync_event_types(result.status, after_failure):
            self.outbox.enqueue(event_type, {"run": run or run_from_result(result)})
        if result.status == FAILED:
            self._unrecorded_failure = self._unrecorded_failure or result.run_id is None
        elif result.status in (SUCCESS, PARTIAL):
            self._unrecorded_failure = False

    def _after_failure(self, result: SyncResult) -> bool:
        """True when the finished run before this one failed: decided from the run history, so restarts keep it."""
        if result.status not in (SUCCESS, PARTIAL) or result.run_id is None:
            return False
        with self.outbox.engine.connect() as connection:
            previous = connection.execute(
                sa.text(
                    # A retention drop is a run of its own, not a sync: it neither fails nor recovers one.
                    "SELECT status FROM rtarf_sync_runs WHERE target_table = :target AND id < :run_id "
                    "AND status IN ('success', 'partial', 'failed') AND mode <> 'retention' ORDER BY id DESC LIMIT 1"
                ),
                {"target": self.settings.table, "run_id": result.run_id},
            ).scalar()
        return previous == FAILED or self._unrecorded_failure

    def _deliver_due(self) -> None:
        claim_seconds = self.settings.webhooks.timeout_seconds + CLAIM_MARGIN_SECONDS
        while not self._stop.is_set():
            claimed = self.outbox.claim(claim_seconds)
            if claimed is None:
                return
            self._deliver(claimed)
            if self._queue:
                self._store_queued()  # a new alert goes in before the next (maybe slow) attempt

    def _deliver(self, claimed: Claimed) -> None:
        hooks = self.settings.webhooks
        endpoint = next((e for e in configured_endpoints(hooks) if e.key == claimed.endpoint_key), None)
        if endpoint is None or hooks.secret is None:
            self._settle(claimed, "abandoned", None, "endpoint no longer configured")
            return
        attempt = self.sender.send(endpoint.url.reveal(), claimed.message_id, claimed.body, hooks.secret.reveal())
        if attempt.outcome == DELIVERED:
            self._settle(claimed, "delivered", attempt.status_code, None)
        elif attempt.outcome == GONE:
            self._settle(claimed, "abandoned", attempt.status_code, attempt.error)
            dropped = self.outbox.disable(claimed, "410 Gone")
            logger.warning(
                "Webhook endpoint %s answered 410 Gone: disabled, %d waiting message(s) abandoned",
                claimed.url_masked,
                dropped,
            )
        elif claimed.attempts >= hooks.max_attempts:
            self._settle(claimed, "abandoned", attempt.status_code, attempt.error)
            logger.warning(
                "Webhook %s %s to %s abandoned after %d attempts: %s",
                claimed.event_type,
                claimed.message_id,
                claimed.url_masked,
                claimed.attempts,
                attempt.error,
            )
        else:
            delay = retry_delay(claimed.attempts, hooks.retry_seconds)
            self._settle(claimed, "failed", attempt.status_code, attempt.error, delay)
            logger.info(
                "Webhook %s %s to %s failed (attempt %d of %d, next in %.1fs): %s",
                claimed.event_type,
                claimed.message_id,
                claimed.url_masked,
                claimed.attempts,
                hooks.max_attempts,
                delay,
                attempt.error,
            )

    def _settle(
        self, claimed: Claimed, status: str, code: int | None, error: str | None, retry_in: float | None = None
    ) -> None:
        if not self.outbox.settle(claimed, status, code, error, retry_in):
            logger.warning("Webhook %s: another sender took it over; outcome not recorded", claimed.message_id)
            return
        if status == "delivered":
            logger.info("Webhook %s %s delivered to %s", claimed.event_type, claimed.message_id, claimed.url_masked)
        for listener in list(self._listeners):
            try:
                listener(claimed.event_type, status)
            except Exception:  # a metrics hook must never stop deliveries
                logger.exception("A webhook delivery listener failed")
