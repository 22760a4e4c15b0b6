"""Builders: the same versions from a thread or a child process, and a child that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocklist.addresses import parse_address
from blocklist.errors import FeedParseError, FeedRefused
from blocklist.feedparsers import FeedFormat
from blocklist.historysqlite import SqliteHistory
from blocklist.snapshot import FeedInfo, encode_version
from blocklistupdater.buildjobs import BuildRequest, FeedBody, Guard, Identity, body_key
from blocklistupdater.builds import ProcessBuilder, ThreadBuilder
from tests.blocklistupdater.support import SMALL_IPSUM_BYTES, ipsum_text, run

MAX = 1 << 30
ROOT = Path(__file__).resolve().parents[2]


def body_of(data: bytes, fmt: FeedFormat = FeedFormat.IPSUM) -> FeedBody:
    return FeedBody(data, body_key(data), fmt, MAX)


def info_of(name: str, body: FeedBody) -> FeedInfo:
    return FeedInfo(
        name=name,
        source=f"/feeds/{name}",
        format="ipsum",
        entries=0,
        v4_entries=0,
        v6_entries=0,
        sha256=body.key,
    )


def request_of(bodies: dict[str, FeedBody], **changes: object) -> BuildRequest:
    feeds = {name: (body, info_of(name, body)) for name, body in bodies.items()}
    values: dict[str, object] = {"feeds": feeds, "min_score": 0, "number": 7, "built_at": 1_800_000_000.5}
    values.update(changes)
    return BuildRequest(**values)  # type: ignore[arg-type]


def test_a_child_process_builds_exactly_what_a_thread_builds(tmp_path: Path) -> None:
    bodies = {"a": body_of(ipsum_text(500)), "b": body_of(SMALL_IPSUM_BYTES)}

    async def both() -> tuple[bytes, bytes, int]:
        builder = ProcessBuilder()
        try:
            in_child = await builder.build(request_of(bodies))
            child_pid = await builder._run(os.getpid)
        finally:
            await builder.aclose()
        in_thread = await ThreadBuilder().build(request_of(bodies))
        assert in_child is not None
        assert in_thread is not None
        assert in_child.history is None  # no history_dir: nothing recorded, nothing carried
        assert in_thread.history is not None
        assert set(in_thread.history) == {"a", "b"}
        return encode_version(in_child), encode_version(in_thread), child_pid

    child, thread, pid = run(both())
    assert child == thread
    assert pid != os.getpid()


def test_a_build_equal_to_the_current_version_is_none() -> None:
    bodies = {"a": body_of(ipsum_text(50))}

    async def go() -> None:
        builder = ProcessBuilder()
        try:
            first = await builder.build(request_of(bodies))
            assert first is not None
            again = await builder.build(request_of(bodies, current=Identity.of(first), number=8))
            assert again is None
        finally:
            await builder.aclose()

    run(go())


def test_the_child_records_history_and_the_version_takes_its_number(tmp_path: Path) -> None:
    bodies = {"a": body_of(ipsum_text(50))}

    async def go() -> int:
        builder = ProcessBuilder()
        try:
            version = await builder.build(request_of(bodies, history_dir=str(tmp_path), number=1))
        finally:
            await builder.aclose()
        assert version is not None
        return version.number

    number = run(go())
    with SqliteHistory(tmp_path).reading() as reader:
        recorded = reader.catalog().get(number)
    assert recorded is not None
    assert set(recorded.feeds) == {"a"}
    assert recorded.feeds["a"].entries == 50


def test_parse_errors_and_refusals_come_back_from_the_child() -> None:
    async def go() -> None:
        builder = ProcessBuilder()
        try:
            with pytest.raises(FeedParseError):
                await builder.parse(body_of(b"<html>not a feed</html>\n" * 50, FeedFormat.PLAIN), None)
            guard = Guard(previous_entries=1000, shrink_threshold=0.5, broadest_v4=8, broadest_v6=16)
            with pytest.raises(FeedRefused):
                await builder.parse(body_of(ipsum_text(10)), guard)
            summary = await builder.parse(body_of(ipsum_text(600)), guard)
            assert (summary.entries, summary.v4_entries, summary.v6_entries) == (600, 600, 0)
        finally:
            await builder.aclose()

    run(go())


def test_a_child_that_dies_is_replaced_and_the_build_still_happens() -> None:
    bodies = {"a": body_of(ipsum_text(50))}

    async def go() -> None:
        builder = ProcessBuilder()
        try:
            first_pid = await builder._run(os.getpid)
            os.kill(first_pid, signal.SIGKILL)
            version = await builder.build(request_of(bodies))
            assert version is not None
            assert version.index.contains(*parse_address("10.0.0.1"))
            assert await builder._run(os.getpid) != first_pid
        finally:
            await builder.aclose()

    run(go())


CHILD_PID_SCRIPT = """
import asyncio, os, sys, time
from blocklistupdater.builds import ProcessBuilder

async def main():
    builder = ProcessBuilder()
    print(await builder._run(os.getpid), flush=True)
    time.sleep(60)

asyncio.run(main())
"""


def test_the_child_exits_when_the_serving_process_is_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_PID_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        os.kill(child, 0)  # alive while its parent is
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"build process {child} outlived the killed serving process")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


ENDED_BY_SIGNAL_SCRIPT = """
import asyncio, os, signal, time
from blocklistupdater.builds import BuildProcessDied, ProcessBuilder

async def main():
    builder = ProcessBuilder()
    await builder._run(os.getpid)
    running = asyncio.ensure_future(builder._run(time.sleep, 30))
    await asyncio.sleep(0.5)
    await builder.aclose()
    try:
        await running
    except BuildProcessDied:
        print("abandoned", flush=True)

asyncio.run(main())
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.raise_signal(signal.SIGTERM)
"""


def test_closing_during_a_build_then_ending_by_a_signal_leaves_nothing_behind() -> None:
    """As uvicorn ends: the builder closed mid-build, then SIGTERM re-raised,
    so no exit handlers run. The step in progress fails without starting a
    new child, and the resource tracker has nothing to report (a process
    pool's queue semaphores made it print a warning into the JSON log)."""
    done = subprocess.run(
        [sys.executable, "-c", ENDED_BY_SIGNAL_SCRIPT],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGTERM
    assert done.stdout == "abandoned\n"
    assert done.stderr == ""
