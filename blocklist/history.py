"""Address history: which feed listed which network when, as intervals.

Every feed entry is kept as the CIDR networks it covers (a range that is not
one CIDR is split into the fewest that cover it). For each (feed, network) a
*record* holds its :data:`Interval` list: sorted, disjoint, half-open
``[start, end)`` in epoch seconds, each with the label and score the entry
had; ``end`` is None while the feed still lists it, and neighbouring
intervals with the same label and score are merged, so a record only grows
when something changes. A network's key is ``bytes([family, prefix]) +
start``: the records that can touch an address are found by computing its
33 (IPv4) or 129 (IPv6) possible keys (:func:`address_keys`), so a lookup at
any moment costs those key lookups plus the intervals found, never a replay.

Alongside: per feed the *open* members (what the latest version lists, to
diff the next one against), the *bounds* (every interval start and end, a
time index that lists what changed between two moments) and the *catalog*
of versions. This module is pure: the stores in :mod:`blocklist.historysqlite`
and :mod:`blocklist.historyredis` hold the data, and apply :class:`Change`
objects built here, all or nothing.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from blocklist.addresses import V4, V6, format_address
from blocklist.feedparsers import FamilyEntries, ParsedFeed

#: (start, end or None while listed, label, score)
Interval = tuple[float, float | None, str, int]
#: What a feed says of a network it lists: (label, score).
Member = tuple[str, int]
_BITS = {V4: 32, V6: 128}


def network_key(family: int, prefix: int, start: int) -> bytes:
    """The key of network ``start/prefix`` of ``family``."""
    return bytes((family, prefix)) + start.to_bytes(_BITS[family] // 8, "big")


def key_network(key: bytes) -> str:
    """The CIDR text of a network key."""
    family, prefix = key[0], key[1]
    return f"{format_address(family, int.from_bytes(key[2:], 'big'))}/{prefix}"


def address_keys(family: int, value: int) -> list[bytes]:
    """The keys of every network that contains the address: one per prefix length."""
    bits = _BITS[family]
    return [network_key(family, p, (value >> (bits - p)) << (bits - p)) for p in range(bits + 1)]


def cidr_pieces(first: int, last: int, bits: int) -> list[tuple[int, int]]:
    """The fewest CIDR networks ``(start, prefix)`` covering exactly ``first..last``."""
    pieces = []
    while first <= last:
        size = (first & -first).bit_length() - 1 if first else bits
        while first + (1 << size) - 1 > last:
            size -= 1
        pieces.append((first, bits - size))
        first += 1 << size
    return pieces


def feed_members(v4: FamilyEntries, v6: FamilyEntries, min_score: int = 0) -> dict[bytes, Member]:
    """Every network a feed's entries list, with label and score, as the index sees them.

    Scored entries below ``min_score`` are left out as :func:`compile_index`
    leaves them out. A network listed twice keeps its highest score and
    the first non-empty label. Cost: O(entries).
    """
    members: dict[bytes, Member] = {}
    for family, entries in ((V4, v4), (V6, v6)):
        bits = _BITS[family]
        width = bits // 8
        head = bytes((family,))
        for i, (first, last, score) in enumerate(
            zip(entries.firsts, entries.lasts, entries.scores, strict=True)
        ):
            if 0 < score < min_score:
                continue
            label = entries.label(i)
            pieces = [(first, bits)] if first == last else cidr_pieces(first, last, bits)
            for start, prefix in pieces:
                key = head + bytes((prefix,)) + start.to_bytes(width, "big")
                had = members.get(key)
                if had is None:
                    members[key] = (label, score)
                elif score > had[1] or (label and not had[0]):
                    members[key] = (had[0] or label, max(score, had[1]))
    return members


def member_at(intervals: Iterable[Interval], moment: float | None) -> Interval | None:
    """The interval covering ``moment`` (None: the open one), or None."""
    for interval in intervals:
        start, end = interval[0], interval[1]
        if moment is None:
            if end is None:
                return interval
        elif start <= moment and (end is None or moment < end):
            return interval
    return None


def set_span(
    intervals: list[Interval], start: float, end: float | None, member: Member | None
) -> list[Interval]:
    """``intervals`` with ``[start, end)`` set to ``member`` (None: not listed), merged."""
    out: list[Interval] = []
    for s, e, label, score in intervals:
        if (e is not None and e <= start) or (end is not None and s >= end):
            out.append((s, e, label, score))
            continue
        if s < start:
            out.append((s, start, label, score))
        if end is not None and (e is None or e > end):
            out.append((end, e, label, score))
    if member is not None:
        out.append((start, end, member[0], member[1]))
    out.sort(key=lambda i: i[0])
    merged: list[Interval] = []
    for interval in out:
        if merged and merged[-1][1] == interval[0] and merged[-1][2:] == interval[2:]:
            merged[-1] = (merged[-1][0], interval[1], interval[2], interval[3])
        else:
            merged.append(interval)
    return merged


def bounds_of(intervals: Iterable[Interval]) -> set[float]:
    """Every moment at which the record changes."""
    out: set[float] = set()
    for start, end, _, _ in intervals:
        out.add(start)
        if end is not None:
            out.add(end)
    return out


def encode_intervals(intervals: list[Interval]) -> bytes:
    """A record's stored form (compact JSON)."""
    return json.dumps(intervals, separators=(",", ":"), ensure_ascii=False).encode()


def decode_intervals(data: bytes | str) -> list[Interval]:
    """Inverse of :func:`encode_intervals`."""
    return [
        (float(s), None if e is None else float(e), str(lb), int(sc)) for s, e, lb, sc in json.loads(data)
    ]


@dataclass(frozen=True, slots=True)
class FeedRow:
    """A feed's state as of one version: networks listed and where the data came from."""

    entries: int
    sha256: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class FeedContent:
    """One feed's content as of a version: its networks and where they came from."""

    members: Mapping[bytes, Member]
    row: FeedRow


def content_of(parsed: ParsedFeed, *, min_score: int, sha256: str | None, source: str | None) -> FeedContent:
    """The :class:`FeedContent` of a parsed feed."""
    members = feed_members(parsed.v4, parsed.v6, min_score)
    return FeedContent(members, FeedRow(len(members), sha256, source))


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version in the catalog.

    ``at`` is when it came into force (a sync: when it was built; an
    import: the archive's date); it stays in force until the next version's
    ``at``. ``feeds`` holds the feeds this version set: all of them for a
    sync, the one imported feed for an import.
    """

    number: int
    at: float
    kind: str
    recorded_at: float
    feeds: dict[str, FeedRow] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Stored form (JSON)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | str) -> VersionRecord:
        """Inverse of :meth:`encode`."""
        raw: dict[str, Any] = json.loads(data)
        feeds = {name: FeedRow(**row) for name, row in raw.pop("feeds").items()}
        return cls(feeds=feeds, **raw)


@dataclass(slots=True)
class Catalog:
    """Every version history knows, sorted by (``at``, ``number``), and the purge horizon."""

    versions: list[VersionRecord] = field(default_factory=list)
    horizon: float | None = None

    def __post_init__(self) -> None:
        self.versions.sort(key=lambda v: (v.at, v.number))

    @property
    def max_number(self) -> int:
        """The highest version number recorded, or -1."""
        return max((v.number for v in self.versions), default=-1)

    def get(self, number: int) -> VersionRecord | None:
        """The version numbered ``number``, or None (unknown or purged)."""
        return next((v for v in self.versions if v.number == number), None)

    def in_force(self, moment: float) -> VersionRecord | None:
        """The version in force at ``moment``: the last one at or before it."""
        i = bisect_right([v.at for v in self.versions], moment)
        return self.versions[i - 1] if i else None

    def feed_times(self, feed: str) -> list[tuple[float, VersionRecord]]:
        """The moments at which ``feed``'s data changed, oldest first."""
        return [(v.at, v) for v in self.versions if feed in v.feeds]

    def feeds(self) -> list[str]:
        """Every feed named by any version."""
        return sorted({name for v in self.versions for name in v.feeds})

    def counts(self) -> dict[int, dict[str, int]]:
        """Per version number: every feed's networks in force then (carried forward)."""
        state: dict[str, int] = {}
        out: dict[int, dict[str, int]] = {}
        for v in self.versions:
            if v.kind != "import":
                # A sync sets every configured feed: one it lacks is gone.
                state = {}
            state.update({name: row.entries for name, row in v.feeds.items()})
            out[v.number] = dict(state)
        return out


@dataclass(slots=True)
class Change:
    """Writes that take history from one consistent state to the next.

    ``records`` and ``opens`` map (feed, key) to the new value, None to
    delete; bounds are (feed, moment, key) to add or delete; ``versions``
    maps a number to its new record, None to delete.
    """

    records: dict[tuple[str, bytes], list[Interval] | None] = field(default_factory=dict)
    opens: dict[tuple[str, bytes], Member | None] = field(default_factory=dict)
    bounds_add: set[tuple[str, float, bytes]] = field(default_factory=set)
    bounds_del: set[tuple[str, float, bytes]] = field(default_factory=set)
    versions: dict[int, VersionRecord | None] = field(default_factory=dict)
    horizon: float | None = None

    def rewrite(self, feed: str, key: bytes, old: list[Interval], new: list[Interval]) -> None:
        """Replace one record, keeping the bounds in step."""
        if new == old:
            return
        self.records[(feed, key)] = new or None
        before, after = bounds_of(old), bounds_of(new)
        # A record may be rewritten more than once in one change: the last
        # rewrite decides each bound.
        for t in before - after:
            self.bounds_add.discard((feed, t, key))
            self.bounds_del.add((feed, t, key))
        for t in after - before:
            self.bounds_del.discard((feed, t, key))
            self.bounds_add.add((feed, t, key))

    def __len__(self) -> int:
        return len(self.records) + len(self.opens) + len(self.versions)


def touched_keys(members: Mapping[bytes, Member], opens: Mapping[bytes, Member]) -> list[bytes]:
    """Keys whose membership or label/score differs between ``opens`` and ``members``."""
    gone = [key for key in opens if key not in members]
    return gone + [key for key, member in members.items() if opens.get(key) != member]


def record_span(
    change: Change,
    feed: str,
    *,
    members: Mapping[bytes, Member],
    before: Mapping[bytes, Member],
    records: Mapping[bytes, list[Interval]],
    start: float,
    end: float | None,
) -> None:
    """Add to ``change`` a version of ``feed`` listing ``members``, in force over ``[start, end)``.

    ``before`` is what history says the feed listed over that span (nothing
    of this feed changes inside it): for a sync, the open members, with
    ``end`` None; for an archive, what was in force just before ``start``,
    until the feed's next version. ``records`` must hold every key of
    :func:`touched_keys`. Writes O(changes); with ``end`` None it also sets
    the open members.
    """
    for key in touched_keys(members, before):
        member = members.get(key)
        old = records.get(key, [])
        change.rewrite(feed, key, old, set_span(old, start, end, member))
        if end is None:
            change.opens[(feed, key)] = member


def members_at(records: Mapping[bytes, list[Interval]], moment: float) -> dict[bytes, Member]:
    """What the records say was listed at ``moment``."""
    out: dict[bytes, Member] = {}
    for key, intervals in records.items():
        hit = member_at(intervals, moment)
        if hit is not None:
            out[key] = (hit[2], hit[3])
    return out


def purge_records(change: Change, feed: str, records: Mapping[bytes, list[Interval]], horizon: float) -> None:
    """Drop from ``records`` every interval that ended at or before ``horizon``."""
    for key, intervals in records.items():
        kept = [i for i in intervals if i[1] is None or i[1] > horizon]
        change.rewrite(feed, key, intervals, kept)


def purge_catalog(change: Change, catalog: Catalog, horizon: float) -> None:
    """Drop versions superseded before ``horizon``; the one in force then stays.

    The kept version takes over the carried-forward feed counts of those
    dropped, so counts at and after the horizon stay right.
    """
    keep = catalog.in_force(horizon)
    if keep is None:
        return
    dropped = [v for v in catalog.versions if (v.at, v.number) < (keep.at, keep.number)]
    if dropped:
        counts = catalog.counts()[keep.number]
        rows = {name: keep.feeds.get(name, FeedRow(entries)) for name, entries in counts.items()}
        merged = VersionRecord(keep.number, keep.at, keep.kind, keep.recorded_at, rows)
        if merged != keep:
            change.versions[keep.number] = merged
    change.versions.update(dict.fromkeys((v.number for v in dropped), None))
    change.horizon = horizon


@dataclass(frozen=True, slots=True)
class Match:
    """One feed entry containing an address at some moment."""

    feed: str
    network: str
    label: str
    score: int
    #: None when history does not know (an entry not recorded yet).
    listed_since: float | None


def matches_at(lookups: Mapping[str, Mapping[bytes, list[Interval]]], moment: float | None) -> list[Match]:
    """Every (feed, network) of ``lookups`` listed at ``moment`` (None: now), narrowest first.

    ``lookups`` holds, per feed, the records of an address's keys.
    ``listed_since`` is the start of the stretch during which the feed
    listed the address without a gap, through any of its networks.
    """
    out = []
    for feed, records in lookups.items():
        spans = sorted((i[0], i[1]) for intervals in records.values() for i in intervals)
        for key, intervals in records.items():
            hit = member_at(intervals, moment)
            if hit is not None:
                since = _stretch_start(spans, hit[0])
                out.append(Match(feed, key_network(key), hit[2], hit[3], since))
    out.sort(key=lambda m: (m.feed, -int(m.network.rsplit("/", 1)[1])))
    return out


def _stretch_start(spans: list[tuple[float, float | None]], start: float) -> float:
    """Walk back from ``start`` across spans that end exactly where a later one begins."""
    moved = True
    while moved:
        moved = False
        for s, e in spans:
            if s < start and (e is None or e >= start):
                start, moved = s, True
    return start


@dataclass(frozen=True, slots=True)
class Listing:
    """One interval during which a feed listed a network holding an address."""

    feed: str
    network: str
    label: str
    start: float
    end: float | None


def listings(lookups: Mapping[str, Mapping[bytes, list[Interval]]]) -> list[Listing]:
    """Every interval of ``lookups``, newest first."""
    out = [
        Listing(feed, key_network(key), label, start, end)
        for feed, records in lookups.items()
        for key, intervals in records.items()
        for start, end, label, _ in intervals
    ]
    out.sort(key=lambda item: (-item.start, item.feed, item.network))
    return out


def diff_keys(
    records: Mapping[bytes, list[Interval]], first: float, second: float
) -> tuple[list[bytes], list[bytes]]:
    """Keys listed at ``second`` and not at ``first`` (added), and the reverse (removed)."""
    added, removed = [], []
    for key, intervals in records.items():
        was, now = member_at(intervals, first), member_at(intervals, second)
        if was is None and now is not None:
            added.append(key)
        elif was is not None and now is None:
            removed.append(key)
    return sorted(added, key=_address_order), sorted(removed, key=_address_order)


def _address_order(key: bytes) -> tuple[int, bytes, int]:
    """Keys in address order (family, start, prefix), as people read network lists."""
    return key[0], key[2:], key[1]


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp (``Z`` or an offset) or a bare date (00:00 UTC).

    Raises :class:`ValueError` with a reason for anything else, a timestamp
    without a zone included (it would be ambiguous).
    """
    text = text.strip()
    try:
        if _DATE_ONLY.match(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        if not _RFC3339.match(text):
            raise ValueError("not RFC 3339")
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"not a date or RFC 3339 timestamp: {text[:40]!r} (use e.g. 2020-06-01 or 2020-06-01T00:00:00Z)"
        ) from None
    return moment.timestamp()


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def iso_moment(moment: float | None) -> str | None:
    """RFC 3339 UTC text of epoch seconds (``Z``, whole seconds unless fractional)."""
    if moment is None:
        return None
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.isoformat(timespec="milliseconds" if stamp.microsecond else "seconds").replace("+00:00", "Z")
