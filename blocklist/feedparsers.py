"""Parsers for the public blocklist formats the service understands.

Supported formats (see :class:`FeedFormat`): stamparm/ipsum (``IP<TAB>count``),
FireHOL netsets, Spamhaus DROP / EDROP / DROPv6 (``CIDR ; SBLnnn``) and a plain
list of one address, CIDR or ``begin-end`` range per line. All are pure
functions of the bytes handed in: no I/O.

Rules common to all formats: blank lines and lines starting with ``#`` or
``;`` are comments, never entries; an inline comment after the entry (a
Spamhaus ``SBLnnn``, a netset's note) becomes the entry's label, and
ipsum's count is its label too; a line that is not a valid entry is counted as malformed and
sampled for the report, and the whole feed is refused only when malformed
lines are at least as many as valid ones (an HTML error page served with status 200, say).
"""

from __future__ import annotations

import enum
import gzip
import io
import sys
import zlib
from array import array
from collections.abc import MutableSequence
from dataclasses import dataclass, field

from blocklist.addresses import V4, V6, parse_network
from blocklist.errors import FeedParseError, InvalidAddress

GZIP_MAGIC = b"\x1f\x8b"
#: Scores are stored in 16 bits; ipsum's counts are far below this.
MAX_SCORE = 0xFFFF
_SAMPLE_LIMIT = 5
_SAMPLE_WIDTH = 80
_DETECT_LINES = 200
#: Labels are cut to this many characters.
LABEL_WIDTH = 100
_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


class FeedFormat(enum.StrEnum):
    """A feed's line format; ``AUTO`` means detect it from the content."""

    AUTO = "auto"
    IPSUM = "ipsum"
    NETSET = "netset"
    SPAMHAUS = "spamhaus"
    PLAIN = "plain"


@dataclass(slots=True)
class FamilyEntries:
    """Ranges of one address family, as parallel lists (first, last, score, label).

    A score of 0 means the feed gives no score for the entry. The updater
    keeps every feed's entries for rebuilds, so :meth:`for_family` stores
    IPv4 bounds in 4-byte arrays rather than lists of ints. ``labels`` is
    empty while no entry has a label (most lists), else parallel to the
    others with ``""`` for an entry without one; read it with :meth:`label`.
    Labels are text from the feed, untrusted (see :func:`clean_label`).
    """

    firsts: MutableSequence[int] = field(default_factory=list)
    lasts: MutableSequence[int] = field(default_factory=list)
    scores: MutableSequence[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @classmethod
    def for_family(cls, family: int) -> FamilyEntries:
        """Empty entries with the compact storage fitting ``family``."""
        if family == V4:
            return cls(array("I"), array("I"), array("H"))
        return cls([], [], array("H"))

    def __len__(self) -> int:
        return len(self.firsts)

    def append(self, first: int, last: int, score: int, label: str = "") -> None:
        """Add one inclusive range ``first..last`` with its score and label."""
        if self.labels or label:
            self.labels.extend([""] * (len(self.firsts) - len(self.labels)))
            self.labels.append(label)
        self.firsts.append(first)
        self.lasts.append(last)
        self.scores.append(score)

    def label(self, position: int) -> str:
        """The label of the entry at ``position``; ``""`` if it has none."""
        return self.labels[position] if self.labels else ""


@dataclass(slots=True)
class ParsedFeed:
    """What one feed file contained.

    ``entries`` counts valid entry lines (IPv4 and IPv6); ``malformed``
    counts lines that looked like entries but were not valid, and
    ``malformed_samples`` holds the first few as ``"line N: 'text'"``.
    """

    format: FeedFormat
    v4: FamilyEntries
    v6: FamilyEntries
    malformed: int = 0
    malformed_samples: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        """Number of valid entries, both families."""
        return len(self.v4) + len(self.v6)


def decompress_if_gzip(data: bytes, max_size: int) -> bytes:
    """Return ``data`` gunzipped if it starts with the gzip magic, else as is.

    Every member of a multi-member stream is read (RFC 1952), as ``gunzip``
    does. Raises :class:`FeedParseError` if the stream is corrupt or
    truncated, or would expand beyond ``max_size`` bytes (a gzip bomb is cut
    off after ``max_size`` bytes of output, never fully inflated).
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as inflater:
            out = inflater.read(max_size + 1)
    except EOFError:
        raise FeedParseError("truncated gzip data") from None
    except (OSError, zlib.error) as exc:
        raise FeedParseError(f"corrupt gzip data: {exc}") from None
    if len(out) > max_size:
        raise FeedParseError(f"gzip content exceeds the size cap of {max_size} bytes")
    return out


def detect_format(text: str) -> FeedFormat:
    """Guess a feed's format from its first lines (comments included).

    Spamhaus lists use ``;`` comments and ``CIDR ; SBL`` lines; ipsum lines
    are ``IP<TAB>count``; a header naming FireHOL marks a netset; anything
    else is read as a plain list.
    """
    seen = 0
    tabbed = 0
    firehol = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";") or "; SBL" in line:
            return FeedFormat.SPAMHAUS
        if line.startswith("#"):
            lowered = line.lower()
            firehol = firehol or "firehol" in lowered or "netset" in lowered
            if "ipsum" in lowered:
                return FeedFormat.IPSUM
            continue
        seen += 1
        fields = line.split("\t")
        if len(fields) == 2 and fields[1].strip().isdigit():
            tabbed += 1
        if seen >= _DETECT_LINES:
            break
    if seen and tabbed * 2 > seen:
        return FeedFormat.IPSUM
    return FeedFormat.NETSET if firehol else FeedFormat.PLAIN


def parse_feed(data: bytes, fmt: FeedFormat = FeedFormat.AUTO, *, max_size: int) -> ParsedFeed:
    """Parse a whole feed file (optionally gzipped) into address ranges.

    ``max_size`` caps the decompressed size. Raises :class:`FeedParseError`
    when most candidate lines are malformed. Cost: O(lines).
    """
    text = decompress_if_gzip(data, max_size).decode("utf-8", errors="replace").removeprefix("\ufeff")
    if fmt is FeedFormat.AUTO:
        fmt = detect_format(text)
    scored = fmt is FeedFormat.IPSUM
    feed = ParsedFeed(format=fmt, v4=FamilyEntries.for_family(V4), v6=FamilyEntries.for_family(V6))
    v4, v6 = feed.v4, feed.v6
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        entry, label = _split_comment(line)
        fields = entry.split()
        try:
            if not fields or (not scored and len(fields) > 1):
                raise InvalidAddress("unexpected text after the entry")
            family, first, last = parse_network(fields[0])
            if scored:
                score = _score(fields)
                label = str(score)
            else:
                score = 0
        except (InvalidAddress, ValueError):
            feed.malformed += 1
            if len(feed.malformed_samples) < _SAMPLE_LIMIT:
                feed.malformed_samples.append(f"line {lineno}: {raw[:_SAMPLE_WIDTH]!r}")
            continue
        (v4 if family == V4 else v6).append(first, last, score, label)
    if feed.malformed and feed.malformed >= feed.entries:
        raise FeedParseError(
            f"{feed.malformed} of {feed.malformed + feed.entries} entry lines are malformed "
            f"(not a {fmt} list?); first: {feed.malformed_samples[0]}"
        )
    return feed


def clean_label(text: str, width: int = LABEL_WIDTH) -> str:
    """``text`` as a label: control characters removed, stripped, cut to ``width`` characters."""
    return text.translate(_CONTROL).strip()[:width].strip()


def _split_comment(line: str) -> tuple[str, str]:
    """The entry part of a line and its inline comment (after ``#`` or ``;``), cleaned."""
    cut = min((i for i in (line.find("#"), line.find(";")) if i >= 0), default=-1)
    if cut < 0:
        return line, ""
    return line[:cut], sys.intern(clean_label(line[cut + 1 :]))


def _score(fields: list[str]) -> int:
    if len(fields) == 1:
        return 1
    if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()):
        raise ValueError("ipsum count is not a number")
    return min(int(fields[1]), MAX_SCORE)
