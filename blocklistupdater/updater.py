"""The sync pipeline: fetch -> parse -> check -> compile -> publish.

:class:`Updater` keeps, per configured feed, the last good body and its
status (what ``/status`` shows). Parsing, checking and compiling run in a
:class:`~blocklistupdater.builds.Builder`: a thread, or a child process in
embedded mode. A sync that fails or is refused changes
nothing that is served: the last good content of that feed stays in every
later build. Publishing is delegated to a callback, so the same pipeline
serves embedded mode (swap in memory, write the state dir) and distributed
mode (publish to Redis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from blocklist.bootstrap import BOOTSTRAP_DATE, bootstrap_source, read_bootstrap
from blocklist.errors import FeedError, FeedParseError, FeedRefused, FetchError
from blocklist.settings import PRESETS, FeedSpec, Settings
from blocklist.snapshot import FeedInfo, Version
from blocklistupdater import metrics
from blocklistupdater.buildjobs import BuildRequest, FeedBody, Guard, Identity, Summary, body_key
from blocklistupdater.builds import Builder, ThreadBuilder
from blocklistupdater.fetcher import Fetcher, Validators
from blocklistupdater.statestore import StateStore, StoredFeed

log = logging.getLogger(__name__)

#: Publishes a version; may return the version actually published (a
#: distributed publisher renumbers above a version published meanwhile).
Publish = Callable[[Version], Awaitable[Version | None]]


class Outcome(enum.StrEnum):
    """Result of one feed sync."""

    UPDATED = "updated"
    NOT_MODIFIED = "not_modified"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(slots=True)
class FeedStatus:
    """A feed's last good body and the story of its recent syncs."""

    spec: FeedSpec
    body: FeedBody | None = None
    info: FeedInfo | None = None
    last_attempt: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_outcome: Outcome | None = None
    refusals: int = 0
    consecutive_failures: int = 0
    malformed_samples: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def is_stale(self, now: float, interval: float) -> bool:
        """True if this feed's data is bundled, missing or overdue (see :func:`is_stale`)."""
        return is_stale(self.info, self.last_success, now, interval)


def is_stale(info: FeedInfo | None, last_success: float | None, now: float, interval: float) -> bool:
    """True if a feed's data is bundled, missing, or unconfirmed for two intervals."""
    if info is None or info.bootstrap:
        return True
    confirmed = last_success or info.fetched_at or 0.0
    return now - confirmed > 2 * interval


class Updater:
    """Syncs configured feeds and publishes a new version when content changes.

    ``publish`` is awaited with each new version; ``store`` (embedded mode)
    persists good feed bodies so a restart needs no network. ``builder``
    parses and compiles (default: a thread of this process); with
    ``history_dir`` it also records each version in that state directory's
    history before it is published.
    """

    def __init__(
        self,
        settings: Settings,
        fetcher: Fetcher,
        publish: Publish,
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        builder: Builder | None = None,
        history_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.feeds = {spec.name: FeedStatus(spec) for spec in settings.feeds}
        self.current: Version | None = None
        self._fetcher = fetcher
        self._publish = publish
        self._store = store
        self._clock = clock
        self._builder: Builder = builder or ThreadBuilder()
        self._history_dir = history_dir
        self._build_lock = asyncio.Lock()
        self._dirty = False

    def adopt(self, version: Version) -> None:
        """Take ``version`` (already served) as current; numbering continues from it."""
        self.current = version

    async def restore(self) -> Version | None:
        """Load every feed's last good content (state dir, then bundled data).

        Publishes a rebuilt version if what is restored differs from
        :attr:`current` (or nothing is current yet). Needs no network.
        """
        for status in self.feeds.values():
            await self._restore_feed(status)
        wanted = {name: s.info.sha256 for name, s in self.feeds.items() if s.info}
        current = self.current
        have = {f.name: f.sha256 for f in current.feeds} if current else None
        same_build = current is not None and current.min_score == self.settings.min_score
        bundled = any(s.info.bootstrap for s in self.feeds.values() if s.info)
        if current is not None and bundled and not current.bootstrap:
            # Never replace synced data with the bundled snapshot (a fresh
            # worker without its state dir); the first sync takes over.
            return None
        if wanted and (wanted != have or not same_build):
            return await self._build_and_publish()
        return None

    async def _restore_feed(self, status: FeedStatus) -> None:
        spec = status.spec
        stored = await asyncio.to_thread(self._store.load_feed, spec.name) if self._store else None
        if stored and stored.source == spec.source:
            try:
                body = await self._body(stored.body, spec, stored.sha256)
                summary = await self._builder.parse(body, None)
            except FeedError as exc:
                log.warning("stored feed unreadable", extra={"feed": spec.name, "error": str(exc)})
            else:
                validators = Validators(stored.etag, stored.last_modified, stored.sha256)
                self._accept(status, body, summary, validators, stored.fetched_at)
                return
        if self.settings.bootstrap and spec.source == PRESETS["ipsum"][1]:
            body = await self._body(await asyncio.to_thread(read_bootstrap), spec, None)
            summary = await self._builder.parse(body, None)
            info = FeedInfo(
                name=spec.name,
                source=bootstrap_source(),
                format=summary.format,
                entries=summary.entries,
                v4_entries=summary.v4_entries,
                v6_entries=summary.v6_entries,
                data_date=BOOTSTRAP_DATE,
                bootstrap=True,
            )
            status.body, status.info = body, info
            log.warning(
                "serving the bundled feed snapshot until the first sync",
                extra={"feed": spec.name, "data_date": BOOTSTRAP_DATE},
            )

    async def _body(self, data: bytes, spec: FeedSpec, sha256: str | None) -> FeedBody:
        """``data`` as a :class:`FeedBody` of ``spec``; its SHA-256 computed unless given."""
        if sha256 is None:
            sha256 = await asyncio.to_thread(body_key, data)
        return FeedBody(data, sha256, spec.format, self.settings.max_download_bytes)

    async def sync_once(self) -> dict[str, Outcome]:
        """Sync every feed concurrently, then publish at most one new version."""
        names = list(self.feeds)
        outcomes = await asyncio.gather(*(self._refresh(name) for name in names))
        if Outcome.UPDATED in outcomes or self.current is None or self._dirty:
            await self._build_and_publish()
        return dict(zip(names, outcomes, strict=True))

    async def sync_feed(self, name: str) -> Outcome:
        """Sync one feed; publish a new version if its content changed."""
        outcome = await self._refresh(name)
        if outcome is Outcome.UPDATED or self.current is None or self._dirty:
            await self._build_and_publish()
        return outcome

    async def _refresh(self, name: str) -> Outcome:
        # The start-up sync and a feed's own job may overlap: one at a time.
        async with self.feeds[name].lock:
            return await self._refresh_locked(name)

    async def _refresh_locked(self, name: str) -> Outcome:
        status = self.feeds[name]
        spec = status.spec
        now = self._clock()
        status.last_attempt = now
        previous = status.info if status.info and not status.info.bootstrap else None
        validators = Validators(previous.etag, previous.last_modified, previous.sha256) if previous else None
        try:
            result = await self._fetcher.fetch(spec, validators)
            if result.body is None:
                outcome = Outcome.NOT_MODIFIED
                self._refresh_validators(status, result.validators)
            else:
                body = await self._body(result.body, spec, result.validators.sha256)
                guard = Guard(
                    previous.entries if previous else None,
                    self.settings.shrink_threshold,
                    self.settings.broadest_prefix_v4,
                    self.settings.broadest_prefix_v6,
                )
                summary = await self._builder.parse(body, guard)
                self._accept(status, body, summary, result.validators, now)
                if self._store:
                    try:
                        await asyncio.to_thread(self._save, status, result.body)
                    except OSError as exc:
                        # Served anyway; only a restart without network loses it.
                        log.warning("could not persist feed", extra={"feed": name, "error": str(exc)})
                outcome = Outcome.UPDATED
        except (FeedParseError, FeedRefused) as exc:
            return self._record_failure(status, Outcome.REFUSED, exc)
        except FetchError as exc:
            return self._record_failure(status, Outcome.FAILED, exc)
        except Exception as exc:
            # A bug or an unforeseen library error must not sink the other
            # feeds of this sync; it is logged with its traceback.
            log.exception("unexpected error syncing feed", extra={"feed": name})
            return self._record_failure(status, Outcome.FAILED, exc)
        status.last_success = now
        status.last_error = None
        status.last_outcome = outcome
        status.consecutive_failures = 0
        metrics.SYNC_OUTCOMES.labels(name, outcome).inc()
        metrics.FEED_LAST_SUCCESS.labels(name).set(now)
        log.info(
            "feed synced",
            extra={
                "feed": name,
                "outcome": str(outcome),
                "entries": status.info.entries if status.info else 0,
            },
        )
        return outcome

    def _record_failure(self, status: FeedStatus, outcome: Outcome, exc: Exception) -> Outcome:
        name = status.spec.name
        status.last_error = f"{outcome}: {exc}"
        status.last_outcome = outcome
        status.consecutive_failures += 1
        if outcome is Outcome.REFUSED:
            status.refusals += 1
        metrics.SYNC_OUTCOMES.labels(name, outcome).inc()
        log.warning(
            "feed sync %s, last good content kept",
            outcome,
            extra={"feed": name, "outcome": str(outcome), "error": str(exc)},
        )
        return outcome

    def _refresh_validators(self, status: FeedStatus, validators: Validators) -> None:
        """Keep a new ETag / Last-Modified served with unchanged bytes, so the
        next conditional GET can get a 304 instead of the whole file again."""
        info = status.info
        if info is None or info.bootstrap or validators.sha256 is None:
            return
        if (validators.etag, validators.last_modified) == (info.etag, info.last_modified):
            return
        status.info = dataclasses.replace(info, etag=validators.etag, last_modified=validators.last_modified)

    def _accept(
        self, status: FeedStatus, body: FeedBody, summary: Summary, validators: Validators, fetched_at: float
    ) -> None:
        spec = status.spec
        status.body = body
        status.malformed_samples = list(summary.malformed_samples)
        status.info = FeedInfo(
            name=spec.name,
            source=spec.source,
            format=summary.format,
            entries=summary.entries,
            v4_entries=summary.v4_entries,
            v6_entries=summary.v6_entries,
            malformed=summary.malformed,
            etag=validators.etag,
            last_modified=validators.last_modified,
            sha256=validators.sha256,
            fetched_at=fetched_at,
        )
        metrics.FEED_ENTRIES.labels(spec.name).set(summary.entries)

    def _save(self, status: FeedStatus, body: bytes) -> None:
        assert self._store is not None
        assert status.info is not None
        info = status.info
        self._store.save_feed(
            StoredFeed(
                name=info.name,
                source=info.source,
                format=info.format,
                etag=info.etag,
                last_modified=info.last_modified,
                sha256=info.sha256,
                fetched_at=info.fetched_at or self._clock(),
                body=body,
            )
        )

    async def _build_and_publish(self) -> Version | None:
        """Compile every feed's last good content and publish it.

        Concurrent callers coalesce: a caller that finds its change already
        built by another returns without building again.
        """
        self._dirty = True
        async with self._build_lock:
            if not self._dirty:
                return self.current
            self._dirty = False
            # Take content and metadata together before the compile yields:
            # a feed accepted meanwhile goes into the next build, whole.
            ready = {n: (s.body, s.info) for n, s in self.feeds.items() if s.body is not None and s.info}
            if not ready:
                return None
            infos = tuple(info for _, info in ready.values())
            request = BuildRequest(
                feeds=ready,
                min_score=self.settings.min_score,
                number=self.current.number + 1 if self.current else _first_number(infos),
                built_at=round(self._clock(), 3),  # whole ms, as history records it
                current=Identity.of(self.current) if self.current is not None else None,
                history_dir=str(self._history_dir) if self._history_dir is not None else None,
            )
            try:
                version = await self._builder.build(request)
            except BaseException:
                self._dirty = True
                raise
            if version is None:
                # E.g. a restarted worker re-downloading what is already live.
                log.info("rebuilt content equals the live version; not published")
                return self.current
            try:
                published = await self._publish(version)
            except BaseException:
                # Not published: the next sync builds again even if no feed
                # changes (the change is already accepted, never refetched).
                self._dirty = True
                raise
            version = published or version
            number = version.number
            self.current = version
            metrics.VERSION_PUBLISHED.set(number)
            log.info(
                "version published",
                extra={"version": number, "ranges": version.index.ranges, "feeds": list(ready)},
            )
            return version


def _first_number(infos: tuple[FeedInfo, ...]) -> int:
    # A version built only from bundled data is 0, so the first synced one is 1.
    return 0 if all(info.bootstrap for info in infos) else 1
