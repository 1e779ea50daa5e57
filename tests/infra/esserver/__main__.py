"""Run the server standalone: `python -m tests.infra.esserver --port 9200`."""

from __future__ import annotations

import argparse
import threading

from tests.infra.esserver.server import EsProtocolServer


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.infra.esserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument(
        "--refresh-interval",
        type=float,
        default=None,
        help="seconds between automatic refreshes (default: only explicit ones)",
    )
    args = parser.parse_args(argv)
    server = EsProtocolServer(args.host, args.port, args.refresh_interval).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
