"""Embedded mode: the API process also runs the updater, no other server.

Start-up answers from the state directory's last published version within
milliseconds, before any network call; the updater then restores every
feed's last good content (or the bundled snapshot) and syncs on schedule.

With several uvicorn workers sharing one state directory, exactly one of
them (the holder of an ``flock`` on ``updater.lock``) runs the updater; the
others reload ``version.bin`` when it changes and take the lock over if its
holder exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from typing import Any

import httpx

from blocklist.settings import Settings
from blocklist.snapshot import Version
from blocklistupdater.fetcher import Fetcher
from blocklistupdater.scheduler import SyncScheduler
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Updater, is_stale
from ipchecking.holder import VersionHolder

log = logging.getLogger(__name__)

#: How often a worker that does not run the updater looks for a new version.
FOLLOW_INTERVAL = 2.0
LOCK_FILE = "updater.lock"


class EmbeddedRuntime:
    """Owns the updater, its HTTP client and scheduler for one API process."""

    mode = "embedded"

    def __init__(
        self,
        settings: Settings,
        holder: VersionHolder,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        follow_interval: float = FOLLOW_INTERVAL,
    ) -> None:
        self.settings = settings
        self.follow_interval = follow_interval
        self.holder = holder
        self.store = StateStore(settings.state_dir)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.updater: Updater | None = None
        self.scheduler: SyncScheduler | None = None
        self._lock_fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen_file: tuple[int, int] | None = None
        self.started_at = time.time()

    async def start(self) -> None:
        """Serve the stored version (if any) now; sync in the background."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._note_file()
        version = await asyncio.to_thread(self.store.load_version)
        if version is not None:
            self.holder.swap(version)
            log.info("serving stored version", extra={"version": version.number})
        settings = self.settings
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.http_timeout, connect=min(10.0, settings.http_timeout)),
            follow_redirects=True,
            max_redirects=5,
        )
        self.updater = Updater(settings, Fetcher(settings, self._client), self._publish, store=self.store)
        self._task = asyncio.create_task(self._run(), name="embedded-updater")

    async def stop(self) -> None:
        """Stop syncing, close the HTTP client, release the updater lock."""
        if self.scheduler:
            self.scheduler.shutdown()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client:
            await self._client.aclose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def is_updater(self) -> bool:
        """True if this process runs the updater (holds the lock)."""
        return self._lock_fd is not None

    async def _run(self) -> None:
        try:
            while not self._try_lock():
                await asyncio.sleep(self.follow_interval)
                await self._follow()
            await self._lead()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded updater stopped by an unexpected error")

    async def _lead(self) -> None:
        assert self.updater is not None
        served = self.holder.version
        if served is not None:
            self.updater.adopt(served)
        await self.updater.restore()
        self.scheduler = SyncScheduler(self.updater)
        self.scheduler.start()

    async def _follow(self) -> None:
        if not self._note_file():
            return
        version = await asyncio.to_thread(self.store.load_version)
        current = self.holder.version
        if version is not None and (current is None or version.number > current.number):
            self.holder.swap(version)
            log.info("loaded version published by another worker", extra={"version": version.number})

    def _note_file(self) -> bool:
        """Remember the state file's identity; True if it changed since last time."""
        try:
            stat = self.store.version_path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        changed = seen != self._seen_file
        self._seen_file = seen
        return changed and seen is not None

    def _try_lock(self) -> bool:
        fd = os.open(self.settings.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _publish(self, version: Version) -> None:
        await asyncio.to_thread(self.store.save_version, version)
        self._note_file()
        self.holder.swap(version)

    def status(self) -> dict[str, Any]:
        """Mode-specific part of ``/status``: updater role and feed states."""
        now = time.time()
        updater = self.updater
        next_runs = self.scheduler.next_runs() if self.scheduler else {}
        served = self.holder.version
        served_feeds = {f.name: f for f in served.feeds} if served else {}
        feeds: dict[str, Any] = {}
        if updater is not None:
            for name, st in updater.feeds.items():
                # Only the worker running the updater knows sync history;
                # the others describe what the served version holds.
                info = st.info if self.is_updater and st.info else served_feeds.get(name)
                nxt = next_runs.get(name)
                interval = self.settings.interval_for(st.spec)
                feeds[name] = {
                    "source": st.spec.source,
                    "format": info.format if info else str(st.spec.format),
                    "entries": info.entries if info else 0,
                    "malformed": info.malformed if info else 0,
                    "malformed_samples": st.malformed_samples,
                    "served_from": info.source if info else None,
                    "data_date": info.data_date if info else None,
                    "fetched_at": _iso(info.fetched_at) if info else None,
                    "last_attempt": _iso(st.last_attempt),
                    "last_success": _iso(st.last_success),
                    "last_outcome": st.last_outcome,
                    "last_error": st.last_error,
                    "next_run": nxt.isoformat() if nxt else None,
                    "refresh_interval_s": interval,
                    "stale": is_stale(info, st.last_success, now, interval),
                    "refusals": st.refusals,
                    "consecutive_failures": st.consecutive_failures,
                    "validators": {
                        "etag": info.etag if info else None,
                        "last_modified": info.last_modified if info else None,
                        "sha256": info.sha256 if info else None,
                    },
                }
        return {"updater": "this process" if self.is_updater else "another worker", "feeds": feeds}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
