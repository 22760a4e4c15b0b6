"""``python -m ipchecking``: run the API under uvicorn or granian.

    python -m ipchecking [--host H] [--port P] [--workers N] [--log-level L] [--server S]
    python -m ipchecking keys create|list|revoke ...   (see ipchecking.keyscli)

Settings come from the environment (``BLOCKLIST_*``, ``REDIS_URL``).
"""

from __future__ import annotations

import argparse
import sys

from blocklist.errors import ConfigError
from blocklist.logs import log_config
from blocklist.settings import Settings, load_settings

APP_FACTORY = "ipchecking.app:create_app"
#: Seconds in-flight requests get to finish after SIGTERM before workers stop.
GRACEFUL_SHUTDOWN_SECONDS = 10
SERVERS = ("uvicorn", "granian")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, serve until stopped; exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        from ipchecking.keyscli import keys_main  # noqa: PLC0415 - only this command needs it

        return keys_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m ipchecking", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log-level", default=None, help="overrides BLOCKLIST_LOG_LEVEL")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=None,
        help="HTTP server: uvicorn or granian (default: BLOCKLIST_SERVER, else uvicorn)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    level = (args.log_level or settings.log_level).upper()
    server = args.server or settings.server
    if server == "granian":
        return _serve_granian(settings, args.host, args.port, args.workers, level)
    return _serve_uvicorn(settings, args.host, args.port, args.workers, level)


def _serve_uvicorn(settings: Settings, host: str, port: int, workers: int, level: str) -> int:
    import uvicorn  # noqa: PLC0415 - only the chosen server is imported

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(level),
        log_level=level.lower(),
        access_log=settings.access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


def _serve_granian(settings: Settings, host: str, port: int, workers: int, level: str) -> int:
    from granian.constants import Interfaces, Loops  # noqa: PLC0415 - only the chosen server
    from granian.log import LogLevels  # noqa: PLC0415
    from granian.server import Server  # noqa: PLC0415

    Server(
        APP_FACTORY,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        websockets=False,
        log_dictconfig=log_config(level),
        log_level=LogLevels(level.lower()),
        log_access=settings.access_log,
        workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
