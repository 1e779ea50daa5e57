"""Closed by default: without RTARF_API_TOKEN the service listens only where no one else can reach it.

    if not allowed_to_listen(settings, addresses, logger.warning):  # prints the one-line refusal
        raise SystemExit(2)

Judged on what the server really listens on (gunicorn's bound sockets, the dev
server's address), so a `-b` on gunicorn's command line cannot slip past it.
Loopback addresses, names that resolve only to loopback, and unix sockets are local.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any, Callable, Iterable

from config import Settings

Address = tuple[str, str]  # (address as shown, the variable or option that chose it)
GUNICORN_BIND = "gunicorn's -b/--bind or GUNICORN_CMD_ARGS"


def _loopback_ip(text: str) -> bool:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or ip).is_loopback


def is_local(address: str) -> bool:
    """True for a unix socket, a loopback IP, `localhost`, or a name that resolves to loopback only."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0] if ":" in address else address
    host = host.strip("[]").lower()
    if not host:
        return False  # ":8000" means every interface
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _loopback_ip(host)
    except ValueError:
        pass
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False  # a name we cannot resolve is not known to be private
    return bool(found) and all(_loopback_ip(ip) for ip in found)


def listen_refusal(settings: Settings, addresses: Iterable[Address]) -> str | None:
    """Why the service must not listen on `addresses` with these settings, in one line; None if it may."""
    if settings.api_token is not None or settings.allow_unauthenticated:
        return None
    exposed = [(address, source) for address, source in addresses if not is_local(address)]
    if not exposed:
        return None
    address, source = exposed[0]
    return (
        f"refusing to listen on {address} (from {source}) without RTARF_API_TOKEN: set RTARF_API_TOKEN "
        "(at least 16 characters), listen on 127.0.0.1, or set RTARF_ALLOW_UNAUTHENTICATED=true"
    )


def open_warning(settings: Settings, addresses: Iterable[Address]) -> str | None:
    """The warning to print at every start when RTARF_ALLOW_UNAUTHENTICATED opens a reachable address."""
    if settings.api_token is not None:
        return None
    exposed = [address for address, _ in addresses if not is_local(address)]
    if not exposed:
        return None
    return (
        f"RTARF_ALLOW_UNAUTHENTICATED=true: listening on {', '.join(exposed)} without RTARF_API_TOKEN; "
        "anyone who can reach it can start, stop and steer the sync"
    )


def gunicorn_addresses(settings: Settings, server: Any) -> list[Address]:
    """The addresses a gunicorn arbiter really listens on, each with what chose it."""
    configured = list(server.cfg.bind) == [settings.bind]
    source = settings.bind_source if configured else GUNICORN_BIND
    addresses = []
    for listener in server.LISTENERS:
        sock = listener.sock
        if sock.family == socket.AF_UNIX:
            addresses.append((f"unix:{sock.getsockname()}", source))
            continue
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
        addresses.append((shown, source))
    return addresses


def allowed_to_listen(settings: Settings, addresses: Iterable[Address], warn: Callable[[str], None]) -> bool:
    """False (after printing the refusal on stderr) if the service must not serve; warns if open on purpose."""
    addresses = list(addresses)
    refusal = listen_refusal(settings, addresses)
    if refusal is not None:
        print(f"rtarf-sync: configuration error: {refusal}", file=sys.stderr, flush=True)
        return False
    warning = open_warning(settings, addresses)
    if warning is not None:
        warn(warning)
    return True
