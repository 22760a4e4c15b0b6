"""Runs the updater on a schedule (APScheduler, asyncio).

At start every feed is synced once (one combined build); then each feed has
its own interval job. A feed whose sync fails or is refused is retried
sooner, with exponential backoff (:func:`backoff_delay`), never later than
its regular interval. A sync whose publishing fails (Redis down, the lock
held too long) is retried the same way: the accepted content is published
by the retry even when no feed changes meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from blocklistupdater.updater import Outcome, Updater

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: First retry after a failed sync, seconds; doubles per consecutive failure.
FIRST_RETRY_DELAY = 60.0
#: Job id of the start-up sync; a space keeps it apart from every feed name
#: (feed jobs are keyed by feed name, and ``initial-sync`` is a valid one).
INITIAL_SYNC_JOB = "initial sync"
#: Job id of the history purge (run at start, then every purge interval).
PURGE_JOB = "history purge"


def backoff_delay(failures: int, interval: float, first: float = FIRST_RETRY_DELAY) -> float:
    """Delay before retrying a feed after ``failures`` consecutive failures.

    ``first * 2**(failures-1)``, capped at the feed's interval.
    """
    if failures <= 0:
        return interval
    return float(min(interval, first * 2 ** min(failures - 1, 32)))


class SyncScheduler:
    """Owns the APScheduler instance; create and start inside a running loop."""

    def __init__(self, updater: Updater, *, purge: Callable[[], Awaitable[object]] | None = None) -> None:
        self._updater = updater
        self._purge = purge
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._stopping = False
        self.publish_failures = 0

    def start(self, *, sync_now: bool = True) -> None:
        """Schedule every feed; with ``sync_now``, sync them all right away."""
        now = datetime.now(UTC)
        settings = self._updater.settings
        for spec in settings.feeds:
            interval = settings.interval_for(spec)
            self._scheduler.add_job(
                self._sync_feed,
                IntervalTrigger(seconds=interval, timezone=UTC),
                args=[spec.name],
                id=spec.name,
                next_run_time=now + timedelta(seconds=interval),
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        if sync_now:
            self._scheduler.add_job(
                self._sync_all, id=INITIAL_SYNC_JOB, next_run_time=now, misfire_grace_time=None
            )
        if self._purge is not None:
            self._scheduler.add_job(
                self._run_purge,
                IntervalTrigger(seconds=settings.history_purge_interval, timezone=UTC),
                id=PURGE_JOB,
                next_run_time=now,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        self._scheduler.start()

    async def _run_purge(self) -> None:
        assert self._purge is not None
        try:
            await self._purge()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception:
            # Retried at the next run; serving is not affected.
            log.exception("history purge failed")

    def shutdown(self) -> None:
        """Stop scheduling; a sync in progress is abandoned with its task."""
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def next_runs(self) -> dict[str, datetime | None]:
        """Next planned sync of each feed."""
        return {
            job.id: job.next_run_time for job in self._scheduler.get_jobs() if job.id in self._updater.feeds
        }

    async def _sync_all(self) -> None:
        outcomes = await self._guarded(INITIAL_SYNC_JOB, self._updater.sync_once)
        for name, outcome in (outcomes or {}).items():
            self._after(name, outcome)

    async def _sync_feed(self, name: str) -> None:
        outcome = await self._guarded(name, lambda: self._updater.sync_feed(name))
        if outcome is not None:
            self._after(name, outcome)

    async def _guarded(self, job_id: str, sync: Callable[[], Awaitable[_T]]) -> _T | None:
        """Run one sync; on a publishing failure, retry the job with backoff.

        Feed failures are outcomes, handled by :meth:`_after`; what raises
        here is publishing. Returns None when the sync raised or was
        abandoned at shutdown.
        """
        try:
            result = await sync()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.info("sync abandoned at shutdown", extra={"job": job_id})
            return None
        except Exception as exc:
            self.publish_failures += 1
            delay = backoff_delay(self.publish_failures, self._shortest_interval())
            log.warning(
                "version not published; retry scheduled",
                extra={"job": job_id, "delay_s": delay, "error": f"{type(exc).__name__}: {exc}"},
            )
            self._retry(job_id, delay)
            return None
        self.publish_failures = 0
        return result

    def _retry(self, job_id: str, delay: float) -> None:
        when = datetime.now(UTC) + timedelta(seconds=delay)
        if job_id == INITIAL_SYNC_JOB:
            self._scheduler.add_job(
                self._sync_all, id=INITIAL_SYNC_JOB, next_run_time=when, misfire_grace_time=None,
                replace_existing=True,
            )  # fmt: skip
        elif (job := self._scheduler.get_job(job_id)) is not None:
            job.modify(next_run_time=when)

    def _shortest_interval(self) -> float:
        settings = self._updater.settings
        return min(settings.interval_for(spec) for spec in settings.feeds)

    def _after(self, name: str, outcome: Outcome) -> None:
        if outcome not in (Outcome.FAILED, Outcome.REFUSED):
            return
        status = self._updater.feeds[name]
        interval = self._updater.settings.interval_for(status.spec)
        delay = backoff_delay(status.consecutive_failures, interval)
        job = self._scheduler.get_job(name)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        log.info("feed retry scheduled", extra={"feed": name, "delay_s": delay})
