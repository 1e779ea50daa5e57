"""Realistic RTARF security events for tests, the demo and the benchmark.

Events are deterministic from a seed: the same (seed, number) always gives the
same document. Each is about 1 KB of JSON with nested objects, the way an
IDS/EDR pipeline would index it.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

from rtarf_sync.engine.target.documents import engine_time

Event = dict[str, Any]
BulkPoster = Callable[[str], dict[str, Any]]

SEVERITIES = (("low", 2), ("medium", 4), ("high", 7), ("critical", 10))
UNITS = ("RTARF-HQ", "RTA-1DIV", "RTN-FLEET1", "RTAF-W1", "CYBER-CMD", "J6-NOC")
RULES = (
    ("ET SCAN Nmap Scripting Engine User-Agent Detected", "scan"),
    ("ET POLICY SSH session in progress on unusual port", "policy"),
    ("Multiple failed logons for one account", "authentication"),
    ("Suspicious PowerShell encoded command", "execution"),
    ("DNS query to known sinkhole domain", "command-and-control"),
    ("Outbound SMB to the internet", "exfiltration"),
    ("Privileged group membership changed", "iam"),
    ("TLS certificate from an untrusted issuer", "network"),
)
USERS = ("somchai.k", "suda.p", "anan.w", "pim.r", "kittipong.t", "nattaya.s", "svc_backup", "admin")
CITIES = (
    ("TH", "Bangkok"),
    ("TH", "Chiang Mai"),
    ("SG", "Singapore"),
    ("US", "Ashburn"),
    ("CN", "Shenzhen"),
    ("RU", "Moscow"),
    ("NL", "Amsterdam"),
)
PROTOCOLS = (
    ("tcp", "https", 443),
    ("tcp", "ssh", 22),
    ("udp", "dns", 53),
    ("tcp", "smb", 445),
    ("tcp", "rdp", 3389),
    ("tcp", "http", 80),
)
BASE_TIME = datetime(2025, 11, 14, 0, 0, tzinfo=timezone.utc)


def _ip(rng: random.Random, internal: bool) -> str:
    if internal:
        return f"10.{rng.randint(1, 40)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"{rng.choice((45, 91, 103, 185, 203))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def make_event(number: int, seed: int = 42, start: datetime = BASE_TIME, spacing_ms: int = 1000) -> Event:
    """Return event `number` of the stream `seed`; its timestamp grows with `number`."""
    rng = random.Random(f"{seed}:{number}")
    moment = start + timedelta(milliseconds=number * spacing_ms + rng.randint(0, max(spacing_ms - 1, 0)))
    severity, score = rng.choice(SEVERITIES)
    rule_name, category = rng.choice(RULES)
    transport, protocol, port = rng.choice(PROTOCOLS)
    country, city = rng.choice(CITIES)
    host = f"{rng.choice(UNITS).lower()}-{rng.choice(('ws', 'srv', 'fw', 'dc'))}{rng.randint(1, 99):02d}"
    user = rng.choice(USERS)
    source_ip, destination_ip = _ip(rng, internal=False), _ip(rng, internal=True)
    return {
        "@timestamp": engine_time(moment),
        "event": {
            "id": f"{seed:04x}-{number:012d}",
            "kind": "alert",
            "category": [category],
            "severity": score,
            "ingested": engine_time(moment + timedelta(milliseconds=rng.randint(50, 3000))),
            "dataset": "rtarf.ids",
            "module": rng.choice(("suricata", "zeek", "sysmon", "wazuh")),
        },
        "severity": severity,
        "rule": {
            "id": f"RTARF-{2_000_000 + RULES.index((rule_name, category)) * 17:07d}",
            "name": rule_name,
            "ruleset": "rtarf-soc",
            "category": category,
        },
        "host": {
            "name": host,
            "ip": [_ip(rng, internal=True)],
            "os": {"family": rng.choice(("windows", "linux")), "version": rng.choice(("10", "2019", "22.04"))},
        },
        "source": {
            "ip": source_ip,
            "port": rng.randint(1024, 65535),
            "geo": {"country_iso_code": country, "city_name": city},
        },
        "destination": {"ip": destination_ip, "port": port},
        "network": {"transport": transport, "protocol": protocol, "bytes": rng.randint(60, 5_000_000)},
        "user": {"name": user, "domain": "RTARF"},
        "rtarf": {
            "unit": rng.choice(UNITS),
            "classification": rng.choice(("UNCLASSIFIED", "RESTRICTED")),
            "sensor": f"sensor-{rng.randint(1, 12):02d}",
            "case_id": None,
        },
        "tags": sorted(rng.sample(["ids", "edr", "perimeter", "internal", "priority", "auto-triage"], 2)),
        "message": (
            f"{rule_name} from {source_ip}:{rng.randint(1024, 65535)} to {destination_ip}:{port} "
            f"({protocol}/{transport}) on {host} by {user}; severity {severity}. "
            + "Sensor payload excerpt: "
            + "".join(rng.choice("0123456789abcdef") for _ in range(96))
        ),
    }


def generate_events(count: int, seed: int = 42, first: int = 0, **options: Any) -> Iterator[Event]:
    """Yield `count` events starting at number `first`."""
    for number in range(first, first + count):
        yield make_event(number, seed, **options)


def event_id(event: Event) -> str:
    """The document id a loader gives an event: stable, so reloading updates instead of duplicating."""
    return str(event["event"]["id"])


def bulk_payload(index: str, events: Iterable[Event]) -> str:
    """Build one NDJSON `_bulk` body that indexes `events` into `index`."""
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps({"index": {"_index": index, "_id": event_id(event)}}))
        lines.append(json.dumps(event, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def load_events(
    post: BulkPoster,
    index: str,
    count: int,
    seed: int = 42,
    first: int = 0,
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> int:
    """Index `count` events into `index` with bulk requests; return how many landed.

    `post` sends one NDJSON body to `_bulk` and returns the decoded answer.
    Raises RuntimeError naming the first item error if any item failed.
    """
    loaded = 0
    for offset in range(first, first + count, batch):
        size = min(batch, first + count - offset)
        answer = post(bulk_payload(index, generate_events(size, seed, offset, **options)))
        if answer.get("errors"):
            bad = next(item for item in answer["items"] if next(iter(item.values())).get("error"))
            raise RuntimeError(f"bulk load into {index} failed: {json.dumps(bad)[:500]}")
        loaded += size
        if progress is not None:
            progress(loaded, count)
    return loaded
