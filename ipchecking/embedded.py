"""Embedded mode: the API process also runs the updater, no other server.

Parsing and compiling run in a child process (``BLOCKLIST_BUILD_PROCESS``,
on by default): this process only sends feed bodies, receives the finished
version and swaps it in, so a rebuild does not stall answers.

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
import dataclasses
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from blocklist.historysqlite import SqliteHistory
from blocklist.settings import Settings
from blocklist.snapshot import Version
from blocklistupdater.builds import Builder, ProcessBuilder, ThreadBuilder
from blocklistupdater.fetcher import Fetcher
from blocklistupdater.historyrecorder import purge_sqlite, record_sqlite
from blocklistupdater.scheduler import SyncScheduler
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Updater, is_stale
from ipchecking.holder import VersionHolder
from ipchecking.statusviews import iso

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
        self.history = SqliteHistory(settings.state_dir)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.updater: Updater | None = None
        self.builder: Builder = ProcessBuilder() if settings.build_process else ThreadBuilder()
        self.scheduler: SyncScheduler | None = None
        self._lock_fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen_file: tuple[int, int, int] | None = None
        self._written_status: dict[str, Any] | None = None
        self._unlocked_updater = False
        self.started_at = time.time()
        #: Also run by the updater's purge job (the control store's clean-up), when set.
        self.purge_also: Callable[[float], Awaitable[int]] | None = None

    def ready_version(self) -> int | None:
        """Number of the served version, if any."""
        version = self.holder.version
        return version.number if version else None

    async def start(self) -> None:
        """Serve the stored version (if any) now; sync in the background."""
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create the state dir; nothing will persist", extra={"error": str(exc)})
        self._note_file()
        version = await asyncio.to_thread(self.store.load_version)
        if version is not None and version.bootstrap and not self.settings.bootstrap:
            log.info("stored version is bundled data and bootstrap is off: not served")
        elif version is not None:
            await self.holder.swap_prepared(version)
            log.info("serving stored version", extra={"version": version.number})
        settings = self.settings
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.http_timeout, connect=min(10.0, settings.http_timeout)),
            follow_redirects=True,
            max_redirects=5,
        )
        self.updater = Updater(
            settings,
            Fetcher(settings, self._client),
            self._publish,
            store=self.store,
            builder=self.builder,
            # The builder records history there itself (a thread builder leaves it to _publish).
            history_dir=settings.state_dir,
        )
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
        await self.builder.aclose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._unlocked_updater = False

    @property
    def is_updater(self) -> bool:
        """True if this process runs the updater (holds the lock)."""
        return self._lock_fd is not None or self._unlocked_updater

    async def _run(self) -> None:
        while not self._try_lock():
            await asyncio.sleep(self.follow_interval)
            await self._guarded(self._follow)
        await self._lead()
        while True:
            await self._guarded(self._share_status)
            await asyncio.sleep(self.follow_interval)

    @staticmethod
    async def _guarded(step: Callable[[], Awaitable[None]]) -> None:
        """Run one step of a background loop; log, never propagate, its errors."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded runtime step failed; retrying later")

    async def _lead(self) -> None:
        assert self.updater is not None
        # Another worker may have published since this one last looked.
        await self._guarded(self._follow_now)
        served = self.holder.version
        if served is not None:
            self.updater.adopt(served)
        # A failed restore is not fatal: the scheduler's first sync rebuilds.
        await self._guarded(self._restore)
        self.scheduler = SyncScheduler(self.updater, purge=self._purge_history)
        self.scheduler.start()

    async def _restore(self) -> None:
        assert self.updater is not None
        await self.updater.restore()

    async def _follow_now(self) -> None:
        self._seen_file = None
        await self._follow()

    async def _follow(self) -> None:
        if not self._note_file():
            return
        version = await asyncio.to_thread(self.store.load_version)
        current = self.holder.version
        if version is not None and (current is None or version.number > current.number):
            await self.holder.swap_prepared(version)
            log.info("loaded version published by another worker", extra={"version": version.number})

    def _note_file(self) -> bool:
        """Remember the state file's identity; True if it changed since last time.

        Each publish renames a new file into place, so the inode changes even
        when size and a coarse mtime do not.
        """
        try:
            stat = self.store.version_path.stat()
            seen: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        changed = seen != self._seen_file
        self._seen_file = seen
        return changed and seen is not None

    def _try_lock(self) -> bool:
        try:
            fd = os.open(self.settings.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # No usable state dir: no other worker can share it either, so
            # this one runs the updater, without persistence.
            log.warning("state dir unusable, running the updater unlocked", extra={"error": str(exc)})
            self._unlocked_updater = True
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _publish(self, version: Version) -> Version:
        version = await self._record_history(version)
        # Serve first: a full disk or read-only state dir must not keep new
        # data from being answered; it only costs the restart shortcut.
        await self.holder.swap_prepared(version)
        try:
            await asyncio.to_thread(self.store.save_version, version)
        except OSError as exc:
            log.warning("could not persist version", extra={"version": version.number, "error": str(exc)})
        self._note_file()
        return version

    async def _record_history(self, version: Version) -> Version:
        """Record ``version`` in history before it is served; it keeps the number history gives it."""
        contents = version.history
        version = dataclasses.replace(version, history=None)
        if contents is None:
            return version
        try:
            number = await asyncio.to_thread(record_sqlite, self.history, version, contents)
        except (sqlite3.Error, OSError) as exc:
            # Served anyway: the next version's record catches history up.
            log.warning("could not record history", extra={"version": version.number, "error": str(exc)})
            return version
        return version if number == version.number else dataclasses.replace(version, number=number)

    async def _purge_history(self) -> None:
        writes = await asyncio.to_thread(purge_sqlite, self.history, self.settings, time.time())
        if writes:
            log.info("history purged", extra={"writes": writes})
        if self.purge_also is not None:
            done = await self.purge_also(time.time())
            if done:
                log.info("control data purged", extra={"writes": done})

    async def _share_status(self) -> None:
        """Write the feed status for workers that do not run the updater."""
        feeds = self._feed_status()
        if feeds == self._written_status:
            return
        # Marked written even on failure: an unwritable state dir is reported
        # once per change, not every few seconds.
        self._written_status = feeds
        try:
            await asyncio.to_thread(self.store.save_status, feeds)
        except OSError as exc:
            log.warning("could not share feed status", extra={"error": str(exc)})

    def status(self) -> dict[str, Any]:
        """Mode-specific part of ``/status``: updater role and feed states.

        A worker that does not run the updater reports what the updater
        worker last shared through the state directory.
        """
        if self.is_updater:
            return {"updater": "this process", "feeds": self._feed_status()}
        shared = self.store.load_status()
        return {"updater": "another worker", "feeds": shared if shared is not None else {}}

    def _feed_status(self) -> dict[str, Any]:
        now = time.time()
        updater = self.updater
        next_runs = self.scheduler.next_runs() if self.scheduler else {}
        feeds: dict[str, Any] = {}
        if updater is None:
            return feeds
        for name, st in updater.feeds.items():
            info = st.info
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
                "fetched_at": iso(info.fetched_at) if info else None,
                "last_attempt": iso(st.last_attempt),
                "last_success": iso(st.last_success),
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
        return feeds
