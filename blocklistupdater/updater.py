"""The sync pipeline: fetch -> parse -> check -> compile -> publish.

:class:`Updater` keeps, per configured feed, the last good parsed content and
its status (what ``/status`` shows). A sync that fails or is refused changes
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from blocklist.bootstrap import BOOTSTRAP_DATE, bootstrap_source, read_bootstrap
from blocklist.errors import FeedError, FeedParseError, FeedRefused, FetchError
from blocklist.feedparsers import ParsedFeed, parse_feed
from blocklist.guard import check_feed
from blocklist.history import FeedContent, content_of
from blocklist.index import RangeIndex, compile_index
from blocklist.settings import PRESETS, FeedSpec, Settings
from blocklist.snapshot import FeedInfo, Version, checksum_of
from blocklistupdater import metrics
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
    """A feed's last good content and the story of its recent syncs."""

    spec: FeedSpec
    parsed: ParsedFeed | None = None
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
    persists good feed bodies so a restart needs no network.
    """

    def __init__(
        self,
        settings: Settings,
        fetcher: Fetcher,
        publish: Publish,
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.feeds = {spec.name: FeedStatus(spec) for spec in settings.feeds}
        self.current: Version | None = None
        self._fetcher = fetcher
        self._publish = publish
        self._store = store
        self._clock = clock
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
            await asyncio.to_thread(self._restore_feed, status)
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

    def _restore_feed(self, status: FeedStatus) -> None:
        spec = status.spec
        stored = self._store.load_feed(spec.name) if self._store else None
        if stored and stored.source == spec.source:
            try:
                parsed = parse_feed(stored.body, spec.format, max_size=self.settings.max_download_bytes)
            except FeedError as exc:
                log.warning("stored feed unreadable", extra={"feed": spec.name, "error": str(exc)})
            else:
                validators = Validators(stored.etag, stored.last_modified, stored.sha256)
                self._accept(status, parsed, validators, stored.fetched_at)
                return
        if self.settings.bootstrap and spec.source == PRESETS["ipsum"][1]:
            parsed = parse_feed(read_bootstrap(), spec.format, max_size=self.settings.max_download_bytes)
            info = FeedInfo(
                name=spec.name,
                source=bootstrap_source(),
                format=str(parsed.format),
                entries=parsed.entries,
                v4_entries=len(parsed.v4),
                v6_entries=len(parsed.v6),
                data_date=BOOTSTRAP_DATE,
                bootstrap=True,
            )
            status.parsed, status.info = parsed, info
            log.warning(
                "serving the bundled feed snapshot until the first sync",
                extra={"feed": spec.name, "data_date": BOOTSTRAP_DATE},
            )

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
                parsed = await asyncio.to_thread(
                    parse_feed, result.body, spec.format, max_size=self.settings.max_download_bytes
                )
                check_feed(
                    parsed,
                    previous.entries if previous else None,
                    self.settings.shrink_threshold,
                    broadest_v4=self.settings.broadest_prefix_v4,
                    broadest_v6=self.settings.broadest_prefix_v6,
                )
                self._accept(status, parsed, result.validators, now)
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
        self, status: FeedStatus, parsed: ParsedFeed, validators: Validators, fetched_at: float
    ) -> None:
        spec = status.spec
        status.parsed = parsed
        status.malformed_samples = list(parsed.malformed_samples)
        status.info = FeedInfo(
            name=spec.name,
            source=spec.source,
            format=str(parsed.format),
            entries=parsed.entries,
            v4_entries=len(parsed.v4),
            v6_entries=len(parsed.v6),
            malformed=parsed.malformed,
            etag=validators.etag,
            last_modified=validators.last_modified,
            sha256=validators.sha256,
            fetched_at=fetched_at,
        )
        metrics.FEED_ENTRIES.labels(spec.name).set(parsed.entries)

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
            ready = {n: (s.parsed, s.info) for n, s in self.feeds.items() if s.parsed is not None and s.info}
            if not ready:
                return None
            min_score = self.settings.min_score
            index, contents = await asyncio.to_thread(_compile, ready, min_score)
            infos = tuple(info for _, info in ready.values())
            number = self.current.number + 1 if self.current else _first_number(infos)
            version = Version(
                number=number,
                built_at=round(self._clock(), 3),  # whole ms, as history records it
                feeds=infos,
                index=index,
                checksum=checksum_of(index),
                min_score=min_score,
                history=contents,
            )
            if self.current is not None and _same_content(self.current, version):
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
                extra={"version": number, "ranges": index.ranges, "feeds": list(ready)},
            )
            return version


def _compile(
    ready: Mapping[str, tuple[ParsedFeed, FeedInfo]], min_score: int
) -> tuple[RangeIndex, dict[str, FeedContent]]:
    """The index of every ready feed, and what history records of each (one thread hop)."""
    index = compile_index({n: (p.v4, p.v6) for n, (p, _) in ready.items()}, min_score=min_score)
    contents = {
        name: content_of(parsed, min_score=min_score, sha256=info.sha256, source=info.source)
        for name, (parsed, info) in ready.items()
    }
    return index, contents


def _same_content(a: Version, b: Version) -> bool:
    """Same index, same build setting, same feed bytes: nothing new to publish."""
    return (
        a.checksum == b.checksum
        and a.min_score == b.min_score
        and {(f.name, f.sha256, f.bootstrap) for f in a.feeds}
        == {(f.name, f.sha256, f.bootstrap) for f in b.feeds}
    )


def _first_number(infos: tuple[FeedInfo, ...]) -> int:
    # A version built only from bundled data is 0, so the first synced one is 1.
    return 0 if all(info.bootstrap for info in infos) else 1
