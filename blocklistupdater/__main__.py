"""``python -m blocklistupdater``: the distributed updater worker.

    python -m blocklistupdater            sync at start, then on schedule, until SIGTERM
    python -m blocklistupdater --once     sync every feed once; exit 0 on success
    python -m blocklistupdater --check    exit 0 only if this worker's heartbeat is fresh

Settings come from the environment (``REDIS_URL`` or ``BLOCKLIST_REDIS_SENTINELS``
is required).
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import signal
import sys

from blocklist.errors import ConfigError
from blocklist.logs import log_config
from blocklist.settings import Settings, load_settings
from blocklistupdater.worker import check_heartbeat, run_worker


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, run; the exit code."""
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
