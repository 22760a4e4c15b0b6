"""Scheduling: the backoff formula and SyncScheduler inside a running loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.snapshot import Version
from blocklistupdater import scheduler as scheduler_module
from blocklistupdater.scheduler import FIRST_RETRY_DELAY, SyncScheduler, backoff_delay
from blocklistupdater.updater import Outcome
from tests.blocklistupdater.support import (
    DROP_URL,
    IPSUM_URL,
    SMALL_IPSUM_BYTES,
    FeedServer,
    Published,
    make_settings,
    ok,
    open_updater,
    run,
    status,
)

DAY = 86400.0
TWO_FEEDS = f"ipsum=ipsum:{IPSUM_URL},drop=spamhaus:{DROP_URL}"


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition()`` while yielding to the loop; fail after about 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("condition not reached in time")


# --- backoff_delay ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 60.0), (2, 120.0), (3, 240.0), (4, 480.0), (5, 960.0)],
)
def test_backoff_doubles_per_failure_from_the_first_delay(failures: int, expected: float) -> None:
    assert backoff_delay(failures, DAY) == expected


def test_backoff_first_delay_is_one_minute() -> None:
    assert FIRST_RETRY_DELAY == 60.0
    assert backoff_delay(1, DAY) == FIRST_RETRY_DELAY


def test_backoff_is_capped_at_the_interval() -> None:
    assert backoff_delay(6, 3600.0) == 1920.0
    assert backoff_delay(7, 3600.0) == 3600.0
    assert backoff_delay(50, 3600.0) == 3600.0


def test_backoff_never_exceeds_an_interval_shorter_than_the_first_delay() -> None:
    assert backoff_delay(1, 30.0) == 30.0


def test_backoff_survives_huge_failure_counts() -> None:
    assert backoff_delay(10_000, DAY) == DAY


@pytest.mark.parametrize("failures", [0, -1])
def test_no_failures_gives_the_interval(failures: int) -> None:
    assert backoff_delay(failures, DAY) == DAY


def test_backoff_uses_a_custom_first_delay() -> None:
    assert [backoff_delay(n, DAY, first=5.0) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]


# --- SyncScheduler ------------------------------------------------------------------


def test_start_runs_the_initial_sync_and_plans_each_feed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS, feed_intervals="drop=1h")
    published = Published()
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))
    server.script(DROP_URL, ok(b"203.0.113.0/24 ; SBL1\n"))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            started = datetime.now(UTC)
            scheduler.start(sync_now=True)
            try:
                await wait_until(lambda: bool(published.versions))
                runs = scheduler.next_runs()
                assert set(runs) == {"ipsum", "drop"}
                ipsum_next, drop_next = runs["ipsum"], runs["drop"]
                assert ipsum_next is not None
                assert drop_next is not None
                assert abs(ipsum_next - (started + timedelta(days=1))) < timedelta(seconds=30)
                assert abs(drop_next - (started + timedelta(hours=1))) < timedelta(seconds=30)
            finally:
                scheduler.shutdown()

    run(scenario())
    assert published.numbers == [1]
    assert {f.name for f in published.versions[0].feeds} == {"ipsum", "drop"}
    assert server.count() == 2


def test_start_without_sync_now_syncs_nothing_yet(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=False)
            try:
                await asyncio.sleep(0.3)
                assert set(scheduler.next_runs()) == {"ipsum"}
            finally:
                scheduler.shutdown()

    run(scenario())
    assert server.count() == 0
    assert published.versions == []


def test_failed_sync_moves_the_feed_next_run_to_the_backoff(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    server = FeedServer()
    server.script(IPSUM_URL, status(404))
    server.script(DROP_URL, ok(b"203.0.113.0/24 ; SBL1\n"))
    published = Published()

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=True)
            try:
                await wait_until(lambda: updater.feeds["ipsum"].last_outcome is Outcome.FAILED)
                soon = datetime.now(UTC) + timedelta(hours=1)
                await wait_until(lambda: (scheduler.next_runs()["ipsum"] or soon) < soon)
                runs = scheduler.next_runs()
                now = datetime.now(UTC)
                ipsum_next, drop_next = runs["ipsum"], runs["drop"]
                assert ipsum_next is not None
                assert drop_next is not None
                expected = now + timedelta(seconds=backoff_delay(1, DAY))
                assert abs(ipsum_next - expected) < timedelta(seconds=10)
                # The feed that synced keeps its regular interval.
                assert drop_next > now + timedelta(hours=23)
            finally:
                scheduler.shutdown()

    run(scenario())
    assert published.numbers == [1]


def test_backoff_retry_runs_and_a_refusal_also_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rescheduled feed job really fires; REFUSED reschedules like FAILED."""
    monkeypatch.setattr(scheduler_module, "backoff_delay", lambda failures, interval: 0.05)
    settings = make_settings(tmp_path)
    server = FeedServer()
    server.script(IPSUM_URL, status(404), ok(b""), ok(SMALL_IPSUM_BYTES))
    published = Published()

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=True)
            try:
                await wait_until(lambda: bool(published.versions))
                status_ = updater.feeds["ipsum"]
                assert status_.last_outcome is Outcome.UPDATED
                assert status_.refusals == 1
                assert status_.consecutive_failures == 0
                # Success leaves the next run at the regular interval.
                next_run = scheduler.next_runs()["ipsum"]
                assert next_run is not None
                assert next_run > datetime.now(UTC) + timedelta(hours=23)
            finally:
                scheduler.shutdown()

    run(scenario())
    assert server.count() == 3
    assert published.numbers == [1]


def test_shutdown_stops_scheduling_and_is_idempotent(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), Published()) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=False)
            assert scheduler._scheduler.running
            scheduler.shutdown()
            # APScheduler's asyncio flavour stops from a loop callback.
            await asyncio.sleep(0)
            assert not scheduler._scheduler.running
            scheduler.shutdown()
            await asyncio.sleep(0.2)

    run(scenario())
    assert server.count() == 0


def test_shutdown_before_start_is_harmless(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_updater(make_settings(tmp_path), FeedServer().client(), Published()) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.shutdown()
            assert scheduler.next_runs() == {}

    run(scenario())


def test_a_feed_may_be_named_like_the_initial_sync_job(tmp_path: Path) -> None:
    """Regression: the start-up job id once collided with a valid feed name."""
    settings = make_settings(tmp_path, feeds=f"initial-sync=ipsum:{IPSUM_URL}")
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))
    published = Published()

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=True)
            try:
                await wait_until(lambda: bool(published.versions))
                assert set(scheduler.next_runs()) == {"initial-sync"}
            finally:
                scheduler.shutdown()

    run(scenario())
    assert published.numbers == [1]


class FailingPublish(Published):
    """Publishing raises the first ``failures`` times, as a lost Redis does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def __call__(self, version: Version) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("redis unreachable")
        await super().__call__(version)


def test_failed_publishing_is_retried_with_backoff_until_it_goes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[tuple[int, float]] = []

    def fast_backoff(failures: int, interval: float) -> float:
        delays.append((failures, interval))
        return 0.05

    monkeypatch.setattr(scheduler_module, "backoff_delay", fast_backoff)
    settings = make_settings(tmp_path, feed_intervals="ipsum=1h")
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))
    published = FailingPublish(failures=2)

    async def scenario() -> SyncScheduler:
        async with open_updater(settings, server.client(), published) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=True)
            try:
                await wait_until(lambda: bool(published.versions))
                await wait_until(lambda: scheduler.publish_failures == 0)
            finally:
                scheduler.shutdown()
            return scheduler

    scheduler = run(scenario())
    assert published.calls == 3
    assert published.numbers == [1]
    # Consecutive failures counted, against the shortest feed interval.
    assert delays == [(1, 3600.0), (2, 3600.0)]
    assert scheduler.publish_failures == 0


def test_sync_abandoned_at_shutdown_is_logged_as_such_not_as_a_job_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    server = FeedServer()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))
    started = asyncio.Event()

    class HangingPublish(Published):
        async def __call__(self, version: Version) -> None:
            started.set()
            await asyncio.Event().wait()

    async def scenario() -> None:
        async with open_updater(settings, server.client(), HangingPublish()) as updater:
            scheduler = SyncScheduler(updater)
            scheduler.start(sync_now=True)
            await asyncio.wait_for(started.wait(), timeout=10)
            scheduler.shutdown()
            me = asyncio.current_task()
            jobs = [t for t in asyncio.all_tasks() if t is not me]
            for task in jobs:
                task.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    with caplog.at_level(logging.INFO):
        run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert "sync abandoned at shutdown" in messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
