"""One delivery attempt: sign the stored body, POST it, classify the answer.

Safe by construction: redirects are never followed (a 3xx is a failed attempt),
at most `BODY_CAP` bytes of the answer are read, the whole attempt (connect,
send, headers, body) has one deadline that a watchdog enforces by shutting the
socket (a receiver that drips its answer byte by byte cannot hold the delivery
thread), and an error text never contains the URL (so neither its credentials
nor a token in its query string can leak into logs or the API).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3
from standardwebhooks import Webhook

BODY_CAP = 4096
ERROR_SNIPPET = 200
RETRY_CAP_SECONDS = 3600.0
RETRY_GROWTH = 3.0
USER_AGENT = "rtarf-event-sync-webhooks"

DELIVERED, GONE, FAILED = "delivered", "gone", "failed"


@dataclass(frozen=True)
class Attempt:
    """What one attempt got: `outcome` is delivered, gone (410) or failed."""

    outcome: str
    status_code: int | None
    error: str | None


def signed_headers(secret: str, message_id: str, body: str, moment: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for `body`; the timestamp is the attempt's, so retries stay verifiable."""
    moment = moment or datetime.now(timezone.utc)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }


def retry_delay(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: base * 3^(attempts-1), capped at an hour, with equal jitter."""
    ceiling = min(RETRY_CAP_SECONDS, base * RETRY_GROWTH ** max(0, attempts - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class _Deadline:
    """Shuts a connection's socket once `seconds` have passed, until cancelled: blocked reads end at once."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.expired = False
        self._connection, self._seconds = connection, seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rtarf-webhook-deadline", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.expired = True
        while not self._done.is_set():  # again until the attempt gives up: a connect may still be in flight
            sock = self._connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed or never connected
                    sock.shutdown(socket.SHUT_RDWR)
            self._done.wait(0.05)

    def cancel(self) -> None:
        """The attempt is over: stop watching."""
        self._done.set()
        self._thread.join()


class Sender:
    """POSTs signed messages on a fresh connection per attempt; no retries and no redirects of its own."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def send(self, url: str, message_id: str, body: str, secret: str) -> Attempt:
        """Make one attempt within the timeout, all included; never raises for what the network or receiver does."""
        target, auth = _split_credentials(url)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **auth,
            **signed_headers(secret, message_id, body),
        }
        parts = urlsplit(target)
        connection_class = (
            urllib3.connection.HTTPSConnection if parts.scheme == "https" else urllib3.connection.HTTPConnection
        )
        try:
            # A fresh connection, not a pool's: the watchdog shuts its socket, which must never be reused.
            connection = connection_class(parts.hostname or "", parts.port, timeout=self.timeout)
        except ValueError:  # a port that is not a number
            return Attempt(FAILED, None, "request failed: the URL has no valid host and port")
        deadline = _Deadline(connection, self.timeout)
        try:
            connection.request(
                "POST",
                urlunsplit(("", "", parts.path or "/", parts.query, "")),
                body=body.encode(),
                headers=headers,
                preload_content=False,
            )
            response = connection.getresponse()
            snippet = _read_capped(response)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as error:
            return Attempt(
                FAILED, None, _timed_out(self.timeout) if deadline.expired else _describe(error, self.timeout)
            )
        finally:
            deadline.cancel()
            connection.close()
        if deadline.expired:
            return Attempt(FAILED, response.status, _timed_out(self.timeout))  # the answer never finished
        return _classify(response.status, snippet)


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without user info, and a Basic Authorization header built from it, if any."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    if not userinfo:
        return url, {}
    user, _, password = userinfo.partition(":")
    header = urllib3.util.make_headers(basic_auth=f"{unquote(user)}:{unquote(password)}")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, "")), header


def _read_capped(response: urllib3.BaseHTTPResponse) -> str:
    """At most BODY_CAP bytes of the answer (the deadline's watchdog ends a dripping one)."""
    data = b""
    try:
        while len(data) < BODY_CAP:
            chunk = response.read(min(1024, BODY_CAP - len(data)))
            if not chunk:
                break
            data += chunk
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # the status line is what counts; a broken body does not change it
    return data.decode("utf-8", "replace")


def _classify(status: int, snippet: str) -> Attempt:
    if 200 <= status < 300:
        return Attempt(DELIVERED, status, None)
    if status == 410:
        return Attempt(GONE, status, "410 Gone: the receiver asked to stop sending")
    text = " ".join(snippet.split())[:ERROR_SNIPPET]
    if 300 <= status < 400:
        return Attempt(FAILED, status, f"HTTP {status}: redirect not followed")
    return Attempt(FAILED, status, f"HTTP {status}" + (f": {text}" if text else ""))


def _timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g}s"


def _describe(error: Exception, timeout: float) -> str:
    """An error text without the URL: what happened, not where."""
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return f"connection failed: {_os_reason(error) or 'could not connect'}"
    if isinstance(error, (urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout)):
        return _timed_out(timeout)
    if isinstance(error, (urllib3.exceptions.SSLError, ssl.SSLError)):
        return "TLS error"
    if isinstance(error, (urllib3.exceptions.ProtocolError, http.client.HTTPException, ConnectionError)):
        return "connection broken before an answer"
    return f"request failed: {type(error).__name__}"


def _os_reason(error: BaseException) -> str | None:
    """The operating system's words for a connection failure ("Connection refused"), if any."""
    seen: BaseException | None = error
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
    return None
