"""Turning syncs, imports and purges into history :class:`~blocklist.history.Change` objects.

Each ``build_*`` function reads what it needs through a :class:`HistoryReader`
(a store's view inside its write transaction or publish lock) and returns the
change for the store to apply, all or nothing. What to record of a feed is
:func:`~blocklist.history.feed_members` of its parsed entries.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from blocklist.errors import FeedRefused
from blocklist.feedparsers import ParsedFeed
from blocklist.guard import check_feed
from blocklist.history import (
    Catalog,
    Change,
    FeedContent,
    Interval,
    Member,
    VersionRecord,
    content_of,
    members_at,
    purge_catalog,
    purge_records,
    record_span,
    touched_keys,
)
from blocklist.historysqlite import SqliteHistory
from blocklist.settings import Settings
from blocklist.snapshot import Version

__all__ = [
    "HistoryReader",
    "ImportFile",
    "ImportResult",
    "build_import",
    "build_live",
    "build_purge",
    "build_version",
    "horizons",
    "live_kind",
    "purge_sqlite",
    "record_sqlite",
]
log = logging.getLogger(__name__)


class HistoryReader(Protocol):
    """What building a change reads of a history store."""

    def catalog(self) -> Catalog:
        """Every version and the horizon."""
        ...

    def opens(self, feed: str) -> dict[bytes, Member]:
        """What history holds as listed now by ``feed``."""
        ...

    def records(self, feed: str, keys: Sequence[bytes]) -> dict[bytes, list[Interval]]:
        """The records of ``feed`` at ``keys``."""
        ...

    def feed_records(self, feed: str) -> dict[bytes, list[Interval]]:
        """Every record of ``feed``."""
        ...

    def changed_keys(self, feed: str, after: float, upto: float) -> list[bytes]:
        """Keys of ``feed`` whose record changes in ``(after, upto]``."""
        ...


def build_live(
    reader: HistoryReader,
    *,
    number: int,
    at: float,
    kind: str,
    feeds: Mapping[str, FeedContent],
    recorded_at: float,
) -> tuple[int, Change]:
    """Record a published version listing ``feeds`` (every configured feed).

    Returns the number it is recorded under: ``number``, or one above every
    number history holds (an import may have taken numbers meanwhile). A
    feed history lists but ``feeds`` lacks has been removed: it is closed.
    """
    catalog = reader.catalog()
    number = max(number, catalog.max_number + 1)
    latest = catalog.versions[-1].at if catalog.versions else -math.inf
    # Whole milliseconds: a moment read back from its RFC 3339 text is the same float.
    at = max(round(at, 3), latest)
    change = Change()
    for name in sorted(set(feeds) | set(catalog.feeds())):
        members = feeds[name].members if name in feeds else {}
        opens = reader.opens(name)
        records = reader.records(name, touched_keys(members, opens))
        record_span(change, name, members=members, before=opens, records=records, start=at, end=None)
    rows = {name: content.row for name, content in feeds.items()}
    change.versions[number] = VersionRecord(number, at, kind, recorded_at, rows)
    return number, change


@dataclass(frozen=True, slots=True)
class ImportFile:
    """One archived version of a feed to import."""

    name: str
    at: float
    parsed: ParsedFeed
    sha256: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What became of one file: ``recorded`` (with its number), ``unchanged`` or ``refused``."""

    name: str
    at: float
    outcome: str
    number: int | None = None
    detail: str = ""


def build_import(
    reader: HistoryReader,
    settings: Settings,
    feed: str,
    files: Sequence[ImportFile],
    *,
    first_number: int,
    recorded_at: float,
) -> tuple[Change, list[ImportResult]]:
    """Record archived versions of ``feed``, each in force until the feed's next version.

    Files are taken in date order and slotted between what history already
    holds, so the outcome does not depend on the order of imports. A file
    dated like a version already held with the same content is
    ``unchanged``; refused (and skipped): one dated at or after the feed's
    first synced version (from then on history is what was served), before
    the horizon, like a version held with
    other content, or failing the sanity guards against the version before it.
    """
    catalog = reader.catalog()
    records = reader.feed_records(feed)
    number = max(first_number, catalog.max_number + 1)
    change = Change()
    results: list[ImportResult] = []
    known: tuple[float, Mapping[bytes, Member]] | None = None
    computed = horizons(settings, catalog, recorded_at, also=[feed])[1]
    horizon = max(filter(None, (computed, catalog.horizon)), default=None)
    for item in sorted(files, key=lambda f: f.at):
        times = catalog.feed_times(feed)
        synced = [t for t, v in times if v.kind != "import"]
        same = next((v for t, v in times if t == item.at), None)
        before = [(t, v) for t, v in times if t < item.at]
        after = [t for t, _ in times if t > item.at]
        refusal = ""
        if same is not None:
            if same.feeds[feed].sha256 == item.sha256:
                results.append(ImportResult(item.name, item.at, "unchanged", same.number))
                continue
            refusal = f"version {same.number} of {feed} has this date and other content"
        elif synced and item.at >= synced[0]:
            # From its first sync on, history is what the service itself served.
            refusal = f"not older than the first synced version of {feed}"
        elif horizon is not None and item.at < horizon:
            refusal = "older than the history horizon (it would be purged)"
        else:
            try:
                check_feed(
                    item.parsed,
                    before[-1][1].feeds[feed].entries if before else None,
                    settings.shrink_threshold,
                    broadest_v4=settings.broadest_prefix_v4,
                    broadest_v6=settings.broadest_prefix_v6,
                )
            except FeedRefused as exc:
                refusal = str(exc)
        if refusal:
            results.append(ImportResult(item.name, item.at, "refused", detail=refusal))
            log.warning("archive refused", extra={"feed": feed, "file": item.name, "error": refusal})
            continue
        content = content_of(item.parsed, min_score=settings.min_score, sha256=item.sha256, source=item.name)
        if not before:
            previous: Mapping[bytes, Member] = {}
        elif known is not None and known[0] == before[-1][0]:
            previous = known[1]
        else:
            previous = members_at(records, before[-1][0])
        record_span(
            change,
            feed,
            members=content.members,
            before=previous,
            records=records,
            start=item.at,
            end=after[0] if after else None,
        )
        for key in touched_keys(content.members, previous):
            new = change.records.get((feed, key), records.get(key))
            if new:
                records[key] = new
            else:
                records.pop(key, None)
        record = VersionRecord(number, item.at, "import", recorded_at, {feed: content.row})
        change.versions[number] = record
        catalog.versions.append(record)
        catalog.versions.sort(key=lambda v: (v.at, v.number))
        known = (item.at, content.members)
        results.append(ImportResult(item.name, item.at, "recorded", number))
        number += 1
    return change, results


def horizons(
    settings: Settings, catalog: Catalog, now: float, also: Sequence[str] = ()
) -> tuple[dict[str, float], float | None]:
    """Per feed (of the catalog, and ``also``), the moment before which its history is
    purged; and the catalog's horizon.

    The catalog's horizon (before which ``?at=`` answers 410) is the latest
    of the feeds' horizons: earlier answers would miss some feed's data.
    """
    per_feed = {}
    for name in sorted({*catalog.feeds(), *also}):
        retention = settings.retention_for(name)
        if retention > 0:
            per_feed[name] = now - retention
    return per_feed, max(per_feed.values(), default=None)


def build_purge(reader: HistoryReader, settings: Settings, now: float) -> Change:
    """Purge everything that ended before each feed's horizon, and superseded versions."""
    catalog = reader.catalog()
    per_feed, overall = horizons(settings, catalog, now)
    change = Change()
    for name, horizon in per_feed.items():
        keys = reader.changed_keys(name, -math.inf, horizon)
        purge_records(change, name, reader.records(name, keys), horizon)
    if overall is not None and (catalog.horizon is None or overall > catalog.horizon):
        purge_catalog(change, catalog, overall)
    return change


def live_kind(version: Version) -> str:
    """How a published version is labelled in the catalog."""
    return "bootstrap" if version.bootstrap else "sync"


def build_version(
    reader: HistoryReader, version: Version, contents: Mapping[str, FeedContent]
) -> tuple[int, Change]:
    """:func:`build_live` of a published ``version`` (its number, build time and kind)."""
    return build_live(
        reader,
        number=version.number,
        at=version.built_at,
        kind=live_kind(version),
        feeds=contents,
        recorded_at=time.time(),
    )


def record_sqlite(store: SqliteHistory, version: Version, contents: Mapping[str, FeedContent]) -> int:
    """Record a published version in an embedded store; returns the number it is recorded under."""
    with store.writing() as reader:
        number, change = build_version(reader, version, contents)
        reader.apply(change)
    return number


def purge_sqlite(store: SqliteHistory, settings: Settings, now: float) -> int:
    """Purge an embedded store (see :func:`build_purge`); returns the writes made."""
    with store.writing() as reader:
        change = build_purge(reader, settings, now)
        reader.apply(change)
    if len(change):
        store.compact()
    return len(change)
