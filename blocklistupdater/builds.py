"""Where the CPU-heavy steps of a sync run: a thread of this process, or a child process.

Parsing a feed and compiling a version are pure Python and numpy work that
holds the interpreter lock for most of its duration. The distributed
updater has no requests to answer and runs them in a thread
(:class:`ThreadBuilder`). An embedded API process must keep answering
while it builds, so :class:`ProcessBuilder` runs them in one child process
(``forkserver``, at a lower CPU priority): the serving process only sends
the feed bodies and receives the finished version's snapshot, which decodes
with one copy per array.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Protocol, TypeVar

from blocklist.snapshot import Version, decode_version
from blocklistupdater.buildjobs import (
    BuildRequest,
    BuildResult,
    FeedBody,
    Guard,
    Summary,
    build_job,
    parse_job,
)
from blocklistupdater.buildjobs import build_version as build_in_process

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Niceness added to the build process: the serving process wins a contended CPU.
BUILD_NICENESS = 10


class Builder(Protocol):
    """Parses feeds and builds versions (see the module docstring)."""

    async def parse(self, feed: FeedBody, guard: Guard | None) -> Summary:
        """Parse and check one body; raises ``FeedParseError`` / ``FeedRefused``."""
        ...

    async def build(self, request: BuildRequest) -> Version | None:
        """The version of ``request`` (None if it equals ``request.current``).

        When ``request.history_dir`` is set the version is already recorded in
        that history store and carries no ``history`` contents; otherwise it
        carries them for its publisher to record.
        """
        ...

    async def aclose(self) -> None:
        """Release what the builder holds (idempotent)."""
        ...


class ThreadBuilder:
    """Runs the steps in a thread of this process; the version keeps its history contents."""

    async def parse(self, feed: FeedBody, guard: Guard | None) -> Summary:
        """See :meth:`Builder.parse`."""
        return await asyncio.to_thread(parse_job, feed, guard)

    async def build(self, request: BuildRequest) -> Version | None:
        """See :meth:`Builder.build`; ``history_dir`` is ignored (the publisher records)."""
        return await asyncio.to_thread(build_in_process, request)

    async def aclose(self) -> None:
        """Nothing to release."""


class ProcessBuilder:
    """Runs the steps in one child process, started on first use and restarted if it dies.

    The child keeps its own cache of parsed bodies; a restarted child parses
    again from the bodies each request carries, so nothing is lost with it.
    """

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lifeline: tuple[Connection, Connection] | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            # Workers fork from a server that has imported the build code once.
            context.set_forkserver_preload(["blocklistupdater.buildjobs"])
            # Only this process holds the sending end: the child sees EOF and
            # exits when this process dies, even by SIGKILL (a pool worker
            # otherwise waits for work forever).
            # (The receiving end is kept too: a worker starts, with a copy, on first use.)
            watched, held = context.Pipe(duplex=False)
            self._lifeline = watched, held
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_start_child, initargs=(watched,)
            )
        return self._pool

    async def _run(self, job: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            try:
                return await loop.run_in_executor(self._executor(), job, *args)
            except BrokenProcessPool:
                # The child died (killed, out of memory): start a new one, once.
                log.warning("build process died; starting a new one", extra={"attempt": attempt})
                self._discard()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def parse(self, feed: FeedBody, guard: Guard | None) -> Summary:
        """See :meth:`Builder.parse`."""
        return await self._run(parse_job, feed, guard)

    async def build(self, request: BuildRequest) -> Version | None:
        """See :meth:`Builder.build`."""
        result: BuildResult = await self._run(build_job, request)
        if result.history_error is not None:
            # Served anyway: the next version's record catches history up.
            log.warning("could not record history", extra={"error": result.history_error})
        if result.snapshot is None:
            return None
        return await asyncio.to_thread(decode_version, result.snapshot)

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._cut_lifeline()

    def _cut_lifeline(self) -> None:
        lifeline, self._lifeline = self._lifeline, None
        for end in lifeline or ():
            end.close()

    async def aclose(self) -> None:
        """Stop the child process (a build in progress is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        self._cut_lifeline()
        for process in processes:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.terminate()
        await asyncio.to_thread(_join, processes)


def _join(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError, AssertionError):
            process.join(timeout=5)


def _start_child(watched: Connection) -> None:
    """Initialise the build process: lower its priority, exit when the serving process is gone."""
    with contextlib.suppress(OSError):
        os.nice(BUILD_NICENESS)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            watched.recv_bytes()
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
