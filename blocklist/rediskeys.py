"""Every Redis key and channel name of the service, and how ranges are encoded.

All names live under one versioned prefix (``blocklist:v1:``), so a schema
change is one edit here and old keys stay findable.

Live lookups use one sorted set per family whose members all have score 0
and sort lexically: ``<first>-<last>`` as fixed-width lowercase hex (8 digits
for IPv4, 32 for IPv6). Ranges are disjoint, so the only candidate for an
address is the greatest member not after ``<address>-`` + ``~``::

    ZRANGE ranges:4 [<addr>~ - BYLEX REV LIMIT 0 1

one round trip for single addresses and CIDRs alike, where a SET of
addresses could not hold a /8 without 16 million members.
"""

from __future__ import annotations

from typing import Final

from blocklist.addresses import V4

PREFIX: Final = "blocklist:v1:"
#: Encoded current version (snapshot codec): what a replica loads in one GET.
SNAPSHOT: Final = PREFIX + "snapshot"
#: Hash: number, built_at, checksum, ranges, feeds (JSON) of the current version.
META: Final = PREFIX + "meta"
#: Sorted set of the numbers of versions kept for history (score = number).
HISTORY: Final = PREFIX + "history"
#: Lock held by the updater that publishes (token + TTL).
PUBLISH_LOCK: Final = PREFIX + "lock:publish"
#: Pub/sub channel announcing each new version number.
ANNOUNCE: Final = PREFIX + "announce"

_HEX_DIGITS: Final = {V4: 8, 6: 32}


def ranges_key(family: int) -> str:
    """Live sorted set of ranges of one family."""
    return f"{PREFIX}ranges:{family}"


def heartbeat_key(worker_id: str) -> str:
    """One updater worker's heartbeat: a key with a TTL, refreshed while it runs."""
    return f"{PREFIX}heartbeat:updater:{worker_id}"


def history_snapshot_key(number: int) -> str:
    """Encoded snapshot of an older version kept for history."""
    return f"{PREFIX}history:{number}"


#: The address history (see :mod:`blocklist.history`): the version catalog
#: (hash: number -> record) and its metadata (horizon, highest number).
TIMELINE_VERSIONS: Final = PREFIX + "timeline:versions"
TIMELINE_META: Final = PREFIX + "timeline:meta"


def timeline_key(kind: str, feed: str) -> str:
    """A feed's history structure: ``records`` and ``opens`` (hashes), ``bounds`` (sorted set)."""
    return f"{PREFIX}timeline:{kind}:{feed}"


def temp_key(token: str, name: str) -> str:
    """A key of a version being written; it carries a TTL until swapped in."""
    return f"{PREFIX}tmp:{token}:{name}"


def encode_range(family: int, first: int, last: int) -> str:
    """Sorted-set member of a range: ``<first>-<last>`` in fixed-width hex."""
    width = _HEX_DIGITS[family]
    return f"{first:0{width}x}-{last:0{width}x}"


def lookup_bound(family: int, value: int) -> str:
    """Inclusive upper bound for ``ZRANGE ... BYLEX REV`` finding ``value``'s range."""
    return f"[{value:0{_HEX_DIGITS[family]}x}-~"


def member_contains(member: str | bytes, value: int) -> bool:
    """True if the range encoded as ``member`` holds ``value``."""
    text = member.decode() if isinstance(member, bytes) else member
    first, _, last = text.partition("-")
    return int(first, 16) <= value <= int(last, 16)


#: Operator control data (see :mod:`blocklist.controlredis`): overrides
#: (hash: id -> document) and their id counter; API keys (hash: name ->
#: document); reputation blocks (sorted set: key -> block end in ms) and the
#: oldest report note per key (sorted set, for retention); the change log
#: and the audit log (streams).
OVERRIDES: Final = PREFIX + "control:overrides"
OVERRIDE_IDS: Final = PREFIX + "control:override-ids"
API_KEYS: Final = PREFIX + "control:keys"
REPUTATION_BLOCKED: Final = PREFIX + "control:reputation-blocked"
REPUTATION_NOTES: Final = PREFIX + "control:reputation-notes"
CONTROL_CHANGES: Final = PREFIX + "control:changes"
AUDIT: Final = PREFIX + "control:audit"


def reputation_state_key(key: str) -> str:
    """One reputation key's state (JSON, expiring when it has recovered or is out of retention)."""
    return f"{PREFIX}control:reputation:{key}"
