"""``python -m blocklistupdater``: the distributed updater worker.

    python -m blocklistupdater            sync at start, then on schedule, until SIGTERM
    python -m blocklistupdater --once     sync every feed once; exit 0 on success
    python -m blocklistupdater --check    exit 0 only if this worker's heartbeat is fresh
    python -m blocklistupdater import --feed NAME [--format F] [--at DATE] FILE...
                                          load archived versions of a feed into history

Settings come from the environment (``REDIS_URL`` or ``BLOCKLIST_REDIS_SENTINELS``
is required, except for ``import``, which writes the state directory's history
without them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import signal
import sqlite3
import sys
from pathlib import Path

from redis.exceptions import RedisError

from blocklist.errors import BlocklistError, ConfigError
from blocklist.feedparsers import FeedFormat
from blocklist.history import parse_moment
from blocklist.logs import log_config
from blocklist.settings import Settings, load_settings
from blocklistupdater.archive import Refused, import_embedded, read_files, report_line
from blocklistupdater.historyrecorder import ImportResult
from blocklistupdater.redishistory import import_redis
from blocklistupdater.worker import check_heartbeat, run_worker


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, run; the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m blocklistupdater", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="sync every feed once and exit")
    mode.add_argument("--check", action="store_true", help="probe: is this worker's heartbeat fresh?")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    if settings.embedded:
        print("REDIS_URL or BLOCKLIST_REDIS_SENTINELS is required for the worker", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings.log_level))
    if args.check:
        return 0 if asyncio.run(check_heartbeat(settings)) else 1
    return asyncio.run(_run(settings, once=args.once))


def import_main(argv: list[str]) -> int:
    """``import``: record archived files of one feed; 0 if every file was recorded or unchanged.

    Each file gets one report line on standard output; a refused file is
    reported and skipped (exit status 1 once all others are done).
    """
    parser = argparse.ArgumentParser(
        prog="python -m blocklistupdater import", description="Load archived versions of a feed into history."
    )
    parser.add_argument("--feed", required=True, help="a configured feed's name")
    parser.add_argument("--format", choices=[str(f) for f in FeedFormat], help="default: the feed's format")
    parser.add_argument("--at", help="date of every file (RFC 3339 or YYYY-MM-DD), instead of their own")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        spec = next((f for f in settings.feeds if f.name == args.feed), None)
        if spec is None:
            raise ConfigError(f"no configured feed is named {args.feed!r}")
        if args.at is not None:
            parse_moment(args.at)
    except (ConfigError, ValueError) as exc:
        print(f"invalid settings or arguments: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings.log_level))
    fmt = FeedFormat(args.format) if args.format else spec.format
    files, unreadable = read_files(settings, args.files, fmt, args.at)
    try:
        if settings.embedded:
            results = import_embedded(settings, spec.name, files)
        else:
            results = asyncio.run(import_redis(settings, spec.name, files))
    except (BlocklistError, RedisError, OSError, sqlite3.Error) as exc:
        print(f"import failed, history unchanged: {exc}", file=sys.stderr)
        return 1
    report: list[ImportResult | Refused] = [*unreadable, *results]
    for item in report:
        print(report_line(item))
    return 1 if unreadable or any(r.outcome == "refused" for r in results) else 0


async def _run(settings: Settings, *, once: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    work = asyncio.create_task(run_worker(settings, once=once, stop=stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        stopper.cancel()
        return work.result()
    # SIGTERM: give the worker a moment to finish, then abandon the sync.
    try:
        return await asyncio.wait_for(work, timeout=10)
    except TimeoutError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
