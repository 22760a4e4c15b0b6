"""``python -m ipchecking``: run the API under uvicorn.

    python -m ipchecking [--host H] [--port P] [--workers N] [--log-level L]

Settings come from the environment (``BLOCKLIST_*``, ``REDIS_URL``).
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from blocklist.errors import ConfigError
from blocklist.logs import log_config
from blocklist.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, serve until stopped; exit code."""
    parser = argparse.ArgumentParser(prog="python -m ipchecking", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log-level", default=None, help="overrides BLOCKLIST_LOG_LEVEL")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    level = args.log_level or settings.log_level
    uvicorn.run(
        "ipchecking.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=log_config(level),
        log_level=level.lower(),
        access_log=settings.access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
