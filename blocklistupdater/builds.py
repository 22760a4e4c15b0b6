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
import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol, TypeVar, cast

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


class BuildProcessDied(RuntimeError):
    """The build process died twice in a row while running one step, or the builder was closed."""


class ProcessBuilder:
    """Runs the steps in one child process, started on first use and restarted if it dies.

    The child keeps its own cache of parsed bodies; a restarted child parses
    again from the bodies each request carries, so nothing is lost with it.
    Steps run one at a time over a pipe. (Not a ``ProcessPoolExecutor``: its
    queues hold named semaphores that outlive a process ended by a signal,
    and the resource tracker then reports them as leaked.)
    """

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._turn = asyncio.Lock()
        self._closed = False

    async def _run(self, job: Callable[..., T], *args: object) -> T:
        async with self._turn:
            for attempt in (1, 2):
                if self._closed:
                    raise BuildProcessDied("the builder is closed")
                child = self._child or self._start()
                try:
                    outcome: T = await asyncio.to_thread(child.call, job, args)
                except _ChildGone:
                    if self._closed:
                        raise BuildProcessDied("the builder was closed during the step") from None
                    # The child died (killed, out of memory): start a new one, once.
                    log.warning("build process died; starting a new one", extra={"attempt": attempt})
                    self._discard()
                except asyncio.CancelledError:
                    # Its reply would arrive for nobody: the next step needs a fresh child.
                    self._discard()
                    raise
                else:
                    return outcome
            raise BuildProcessDied("the build process died twice running one step")

    def _start(self) -> _Child:
        self._child = _Child.start()
        return self._child

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
        child, self._child = self._child, None
        if child is not None:
            child.stop(wait=False)

    async def aclose(self) -> None:
        """Stop the child process; a step in progress, and any later one, raises :class:`BuildProcessDied`."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(child.stop, wait=True)


class _ChildGone(Exception):
    """The child process ended before it answered."""


class _Child:
    """One build process and the pipes to it (see :class:`ProcessBuilder`)."""

    def __init__(
        self, process: multiprocessing.process.BaseProcess, jobs: Connection, lifeline: Connection
    ) -> None:
        self.process = process
        self.jobs = jobs
        self.lifeline = lifeline

    @classmethod
    def start(cls) -> _Child:
        context = multiprocessing.get_context("forkserver")
        # Children fork from a server that has imported the build code once.
        context.set_forkserver_preload(["blocklistupdater.buildjobs"])
        ours, theirs = context.Pipe(duplex=True)
        # Only this process holds the sending end of the lifeline: the child
        # sees EOF and exits when this process dies, even by SIGKILL and in
        # the middle of a build.
        watched, held = context.Pipe(duplex=False)
        process = context.Process(target=_serve, args=(theirs, watched), name="blocklist-build", daemon=True)
        process.start()
        theirs.close()
        watched.close()
        return cls(process, ours, held)

    def call(self, job: Callable[..., T], args: tuple[object, ...]) -> T:
        """Run ``job(*args)`` in the child; its exception is raised here (blocking)."""
        try:
            self.jobs.send((job, args))
            ok, value = self.jobs.recv()
        except (EOFError, OSError) as exc:
            raise _ChildGone from exc
        if not ok:
            raise value
        return cast("T", value)

    def stop(self, *, wait: bool) -> None:
        """End the child; with ``wait``, until it is gone (blocking, a few seconds at most)."""
        for end in (self.jobs, self.lifeline):
            end.close()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.process.terminate()
        if wait:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                self.process.join(timeout=5)
                if self.process.is_alive():
                    self.process.kill()
                    self.process.join(timeout=5)


def _serve(jobs: Connection, watched: Connection) -> None:
    """The build process: lower its priority, run steps until the serving process is gone."""
    with contextlib.suppress(OSError):
        os.nice(BUILD_NICENESS)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            watched.recv_bytes()
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    while True:
        try:
            job, args = jobs.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, object] = (True, job(*args))
        except Exception as exc:  # every failure goes back to the caller
            reply = (False, exc)
        try:
            jobs.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an answer that does not pickle
            jobs.send((False, RuntimeError(f"build step answer could not be sent: {exc!r}")))
