"""Keeps one process's view of overrides, reputation blocks and keys in step with the store.

At start the process loads a :class:`~blocklist.control.Snapshot`; a
background task then reads the store's change log from the snapshot's
cursor (SQLite: polled every 0.2 s; Redis: ``XREAD BLOCK`` on the replica,
answered as soon as a change is written) and applies each entry to the
:class:`~blocklist.decision.ControlView` and the key ring. After any error
it reloads a whole snapshot, so a Redis restart, a failover or a trimmed
log never leaves the view behind. A process that made a change applies it
at once (:meth:`ControlSync.apply`), so its own next lookup sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from blocklist.control import ApiKey, ChangeEntry, ControlStore, Snapshot
from blocklist.decision import ControlView
from blocklist.errors import InvalidAddress
from blocklist.overrides import Override
from ipchecking.auth import ApiKeys
from ipchecking.background import stop_task

log = logging.getLogger(__name__)

#: Longest wait of one change-log read, seconds (capped at half the Redis socket timeout).
READ_WAIT = 1.0
#: How often ended reputation blocks are dropped from memory, seconds.
PRUNE_EVERY = 60.0
MAX_RETRY_DELAY = 5.0


class ControlSync:
    """The follower of one process; see the module docstring."""

    def __init__(
        self, store: ControlStore, view: ControlView, keyring: ApiKeys, *, read_wait: float = READ_WAIT
    ) -> None:
        self.store = store
        self.read_wait = read_wait
        self.view = view
        self.keyring = keyring
        self.cursor: str | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stored_keys: dict[str, ApiKey] = {}
        # Local and followed changes are applied one at a time: each copies,
        # changes and recompiles the overrides it found.
        self._applying = asyncio.Lock()

    async def start(self, load_within: float) -> None:
        """Load a snapshot (waiting at most ``load_within`` s), then follow in the background."""
        try:
            async with asyncio.timeout(load_within):
                await self._load()
        except Exception as exc:  # the follower retries; lookups go on from feeds alone
            self._failed(exc)
        self._task = asyncio.create_task(self._follow(), name="control-follower")

    async def stop(self) -> None:
        """Stop following and close the store."""
        await stop_task(self._task)
        with contextlib.suppress(Exception):
            await self.store.aclose()

    def status(self) -> dict[str, Any]:
        """The ``control`` object of ``/status``."""
        view = self.view
        return {
            "loaded": self.cursor is not None,
            "overrides": len(view.overrides),
            "reputation_blocked": len(view.blocked4) + len(view.blocked6),
            "keys": len(self._stored_keys),
            "last_error": self.last_error,
        }

    async def _load(self) -> None:
        snapshot = await self.store.snapshot(int(self.view.clock() * 1000))
        await self._install(snapshot)

    async def _install(self, snapshot: Snapshot) -> None:
        async with self._applying:
            await self._install_now(snapshot)

    async def _install_now(self, snapshot: Snapshot) -> None:
        overrides = {o.id: o for o in snapshot.overrides}
        compiled = await asyncio.to_thread(self.view.compile, overrides)
        self.view.install(overrides, compiled)
        self.view.replace_blocked(await asyncio.to_thread(self.view.build_blocked, snapshot.blocked))
        self._stored_keys = {k.name: k for k in snapshot.keys}
        self.keyring.replace_stored(self._stored_keys.values())
        self.cursor = snapshot.cursor
        if self.last_error is not None:
            log.info("control data reloaded", extra={"overrides": len(overrides)})
        self.last_error = None

    def _failed(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.last_error is None:
            log.warning("control data follower failed; retrying", extra={"error": error})
        self.last_error = error

    async def _follow(self) -> None:
        delay = 0.2
        pruned = asyncio.get_running_loop().time()
        while True:
            try:
                if self.cursor is None:
                    await self._load()
                assert self.cursor is not None
                result = await self.store.changes(self.cursor, self.read_wait)
                if result is None:
                    self.cursor = None  # the log moved past us: reload
                    continue
                self.cursor, entries = result
                if entries:
                    await self.apply(entries)
                delay = 0.2
                now = asyncio.get_running_loop().time()
                if now - pruned > PRUNE_EVERY:
                    self.view.prune(await asyncio.to_thread(self.view.ended_blocks))
                    pruned = now
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                self.cursor = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def apply(self, entries: Iterable[ChangeEntry]) -> None:
        """Apply change-log entries to the view and the key ring (idempotent)."""
        async with self._applying:
            await self._apply_now(entries)

    async def _apply_now(self, entries: Iterable[ChangeEntry]) -> None:
        overrides: dict[int, Override] | None = None
        for entry in entries:
            if entry.kind == "override":
                if overrides is None:
                    overrides = dict(self.view.overrides)
                if entry.data is None:
                    overrides.pop(int(entry.key), None)
                else:
                    overrides[int(entry.key)] = Override.decode(entry.data)
            elif entry.kind == "blocked":
                with contextlib.suppress(InvalidAddress, ValueError):
                    self.view.set_blocked(entry.key, int(entry.data) if entry.data else None)
            elif entry.kind == "keys":
                if entry.data is None:
                    self._stored_keys.pop(entry.key, None)
                else:
                    self._stored_keys[entry.key] = ApiKey.decode(entry.data)
                self.keyring.replace_stored(self._stored_keys.values())
        if overrides is not None:
            compiled = await asyncio.to_thread(self.view.compile, overrides)
            self.view.install(overrides, compiled)
