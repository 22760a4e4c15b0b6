"""Building small versions for tests from address, CIDR and range strings."""

from __future__ import annotations

from blocklist.addresses import V4, parse_network
from blocklist.feedparsers import FamilyEntries
from blocklist.index import compile_index
from blocklist.snapshot import Version, checksum_of


def make_version(number: int, *entries: str) -> Version:
    """A version numbered ``number`` listing ``entries`` in one feed ``f``."""
    v4, v6 = FamilyEntries(), FamilyEntries()
    for text in entries:
        family, first, last = parse_network(text)
        (v4 if family == V4 else v6).append(first, last, 1)
    index = compile_index({"f": (v4, v6)})
    return Version(number, 1_800_000_000.0 + number, (), index, checksum_of(index))
