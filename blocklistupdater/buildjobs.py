"""The CPU-heavy steps of a sync, as plain functions of picklable values.

:func:`parse_job` parses and checks one feed body; :func:`build_version`
compiles every feed into a version; :func:`build_job` also records it in the
embedded history and encodes it. :mod:`blocklistupdater.builds` runs them in
threads of the calling process (distributed updater) or in a child process
(embedded mode, so the serving process's interpreter lock is never held by
them). Parsed feeds are kept in a small per-process cache keyed by the body's
SHA-256, so a body is parsed once whichever of the steps sees it first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from blocklist.feedparsers import FeedFormat, ParsedFeed, parse_feed
from blocklist.guard import check_feed
from blocklist.history import FeedContent, content_of
from blocklist.historysqlite import SqliteHistory
from blocklist.index import compile_index
from blocklist.snapshot import FeedInfo, Version, checksum_of, encode_version
from blocklistupdater.historyrecorder import record_sqlite

#: Parsed feeds kept per process: every configured feed's current body and a few candidates.
CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class Guard:
    """The arguments of :func:`~blocklist.guard.check_feed` besides the feed
    (``previous_entries`` None: no last good version to compare with)."""

    previous_entries: int | None
    shrink_threshold: float
    broadest_v4: int
    broadest_v6: int


@dataclass(frozen=True, slots=True)
class FeedBody:
    """A feed's bytes as fetched (``key`` is their SHA-256) and how to parse them."""

    body: bytes
    key: str
    format: FeedFormat
    max_size: int


@dataclass(frozen=True, slots=True)
class Summary:
    """What parsing a body found: what :class:`~blocklist.snapshot.FeedInfo` records."""

    key: str
    format: str
    entries: int
    v4_entries: int
    v6_entries: int
    malformed: int
    malformed_samples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes two builds equal: the same index, build setting and feed bytes."""

    checksum: str
    min_score: int
    feeds: frozenset[tuple[str, str | None, bool]]

    @classmethod
    def of(cls, version: Version) -> Identity:
        """The identity of ``version``."""
        feeds = frozenset((f.name, f.sha256, f.bootstrap) for f in version.feeds)
        return cls(version.checksum, version.min_score, feeds)


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """Everything a build needs: each feed's body and info, the new number and time.

    ``current`` is the live version's identity: a build equal to it is not
    published. ``history_dir`` (embedded mode) is the state directory whose
    history store :func:`build_job` records the version in.
    """

    feeds: Mapping[str, tuple[FeedBody, FeedInfo]]
    min_score: int
    number: int
    built_at: float
    current: Identity | None = None
    history_dir: str | None = None


@dataclass(frozen=True, slots=True)
class BuildResult:
    """:func:`build_job`'s answer: the encoded version (None if equal to current)."""

    snapshot: bytes | None
    history_error: str | None = None


_cache: OrderedDict[tuple[str, FeedFormat, int], ParsedFeed] = OrderedDict()


def parsed_of(feed: FeedBody) -> ParsedFeed:
    """``feed`` parsed, from this process's cache when it was parsed before."""
    key = (feed.key, feed.format, feed.max_size)
    parsed = _cache.get(key)
    if parsed is None:
        parsed = parse_feed(feed.body, feed.format, max_size=feed.max_size)
        _cache[key] = parsed
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return parsed


def body_key(body: bytes) -> str:
    """The cache key of a body: its SHA-256, hex."""
    return hashlib.sha256(body).hexdigest()


def parse_job(feed: FeedBody, guard: Guard | None) -> Summary:
    """Parse ``feed`` and check it; raises ``FeedParseError`` / ``FeedRefused``."""
    parsed = parsed_of(feed)
    if guard is not None:
        check_feed(
            parsed,
            guard.previous_entries,
            guard.shrink_threshold,
            broadest_v4=guard.broadest_v4,
            broadest_v6=guard.broadest_v6,
        )
    return Summary(
        feed.key,
        str(parsed.format),
        parsed.entries,
        len(parsed.v4),
        len(parsed.v6),
        parsed.malformed,
        tuple(parsed.malformed_samples),
    )


def build_version(request: BuildRequest) -> Version | None:
    """The version of ``request``'s feeds, with what history records of each
    (``Version.history``); None if it equals ``request.current``."""
    parsed = {name: parsed_of(body) for name, (body, _) in request.feeds.items()}
    index = compile_index({n: (p.v4, p.v6) for n, p in parsed.items()}, min_score=request.min_score)
    version = Version(
        number=request.number,
        built_at=request.built_at,
        feeds=tuple(info for _, info in request.feeds.values()),
        index=index,
        checksum=checksum_of(index),
        min_score=request.min_score,
    )
    if request.current is not None and Identity.of(version) == request.current:
        return None
    contents: dict[str, FeedContent] = {
        name: content_of(parsed[name], min_score=request.min_score, sha256=info.sha256, source=info.source)
        for name, (_, info) in request.feeds.items()
    }
    return dataclasses.replace(version, history=contents)


def build_job(request: BuildRequest) -> BuildResult:
    """:func:`build_version`, recorded in the history store of ``request.history_dir``
    (the version takes the number history gives it), then encoded.

    A history store that cannot be written does not stop the build: the
    version is served anyway and ``history_error`` says why it is not recorded.
    """
    version = build_version(request)
    if version is None:
        return BuildResult(None)
    contents, version = version.history, dataclasses.replace(version, history=None)
    error = None
    if request.history_dir is not None and contents is not None:
        try:
            number = record_sqlite(SqliteHistory(Path(request.history_dir)), version, contents)
        except (sqlite3.Error, OSError) as exc:
            error = str(exc)
        else:
            version = dataclasses.replace(version, number=number)
    return BuildResult(encode_version(version), error)
