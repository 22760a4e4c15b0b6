"""CrowdSec decisions: the blocked networks as the ``ban`` decisions bouncers apply.

A decision set is what ``/v1/export`` serves, as objects: the union of
every feed's networks and the active manual blocks, minus the active
allows, split into the fewest CIDRs (so no two decisions overlap, which
firewall sets with intervals need). Each decision names where it came from:
``origin`` ``lists`` (a feed lists part of it) or ``cscli`` (manual blocks
only, as CrowdSec names a person's decision), and ``scenario`` the feeds and
the block's reason. Identity is the value: a set is diffed against an
older one by value, and a network whose aggregation changed is deleted and
its new pieces added. Pure (no I/O).
"""

from __future__ import annotations

import hashlib
import json
import socket
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from blocklist.addresses import MAX_BITS, V4, V6
from blocklist.aggregate import cidrs, merged, subtract, union
from blocklist.changes import covered
from blocklist.overrides import Override

#: Seconds added to the time until the next refresh in a feed decision's ``duration``.
DURATION_MARGIN = 3600
_INET = {V4: (socket.AF_INET, 4), V6: (socket.AF_INET6, 16)}
#: (family, first, last, reason, expires_at)
Block = tuple[int, int, int, str, float | None]


@dataclass(frozen=True, slots=True)
class OverrideState:
    """The active overrides a decision set is computed with (kept with a bouncer's pull point)."""

    blocks: tuple[Block, ...]
    allows: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, overrides: Iterable[Override], now: float) -> OverrideState:
        """The overrides active at ``now``, in a canonical order."""
        blocks: list[Block] = []
        allows: list[tuple[int, int, int]] = []
        for item in overrides:
            if not item.active(now):
                continue
            family, first, last = item.bounds
            if item.action == "block":
                blocks.append((family, first, last, item.reason, item.expires_at))
            else:
                allows.append((family, first, last))
        return cls(tuple(sorted(blocks, key=lambda b: (b[:3], b[3], b[4] or 0.0))), tuple(sorted(allows)))

    def encode(self) -> str:
        """The stored form (JSON)."""
        return json.dumps({"blocks": self.blocks, "allows": self.allows}, separators=(",", ":"))

    @classmethod
    def decode(cls, doc: str | bytes) -> OverrideState:
        """Inverse of :meth:`encode`."""
        raw: dict[str, Any] = json.loads(doc)
        return cls(
            tuple((int(f), int(a), int(b), str(r), e) for f, a, b, r, e in raw["blocks"]),
            tuple((int(f), int(a), int(b)) for f, a, b in raw["allows"]),
        )

    @property
    def digest(self) -> str:
        """Names the state (equal states, equal digests)."""
        return hashlib.sha256(self.encode().encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Decision:
    """One ``ban`` decision."""

    value: str
    scope: str  # "Ip" (one address) or "Range"
    origin: str
    scenario: str
    expires_at: float | None  # None: lasts to the next refresh
    family: int
    first: int
    last: int

    @property
    def id(self) -> int:
        """A stable id (the same for the same value on every replica)."""
        return int.from_bytes(hashlib.sha256(self.value.encode()).digest()[:6], "big")

    def document(self, now: float, refresh_seconds: float) -> dict[str, Any]:
        """The decision as the CrowdSec API writes it."""
        seconds = refresh_seconds + DURATION_MARGIN if self.expires_at is None else self.expires_at - now
        return {
            "id": self.id,
            "origin": self.origin,
            "type": "ban",
            "scope": self.scope,
            "value": self.value,
            "duration": go_duration(seconds),
            "scenario": self.scenario,
            "simulated": False,
        }


def go_duration(seconds: float) -> str:
    """``seconds`` (at least 1) as a Go duration: ``23h59m58s``."""
    left = max(1, int(seconds))
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    return f"{hours}h{minutes}m{secs}s"


def _text(family: int, network: int, prefix: int) -> tuple[str, str]:
    af, width = _INET[family]
    address = socket.inet_ntop(af, network.to_bytes(width, "big"))
    return (address, "Ip") if prefix == MAX_BITS[family] else (f"{address}/{prefix}", "Range")


def _block_groups(blocks: list[Block]) -> list[tuple[int, int, str, float | None]]:
    """Overlapping or adjacent blocks of one family joined: (first, last, first reason, latest expiry)."""
    groups: list[tuple[int, int, str, float | None]] = []
    for _, first, last, reason, expires in sorted(blocks, key=lambda b: (b[1], b[2])):
        if groups and first <= groups[-1][1] + 1:
            g_first, g_last, g_reason, g_expires = groups[-1]
            later = None if g_expires is None or expires is None else max(g_expires, expires)
            groups[-1] = (g_first, max(g_last, last), g_reason, later)
        else:
            groups.append((first, last, reason, expires))
    return groups


def decision_set(feeds: Mapping[str, Iterable[bytes]], overrides: OverrideState) -> dict[str, Decision]:
    """Every decision, by value, from each feed's network keys (history's form) and ``overrides``.

    O(n + k·c) for n networks, k feeds and c decisions.
    """
    per_feed = {name: covered(keys) for name, keys in sorted(feeds.items())}
    out: dict[str, Decision] = {}
    for family in (V4, V6):
        sources = {name: spans[family] for name, spans in per_feed.items()}
        groups = _block_groups([b for b in overrides.blocks if b[0] == family])
        holes = list(merged((a, b) for f, a, b in overrides.allows if f == family))
        blocked = union(*sources.values(), [(g[0], g[1]) for g in groups])
        at = dict.fromkeys(sources, 0)
        g_at = 0
        for network, prefix in cidrs(subtract(blocked, holes), MAX_BITS[family]):
            last = network + (1 << (MAX_BITS[family] - prefix)) - 1
            names = []
            for name, spans in sources.items():
                i = at[name]
                while i < len(spans) and spans[i][1] < network:
                    i += 1
                at[name] = i
                if i < len(spans) and spans[i][0] <= last:
                    names.append(name)
            while g_at < len(groups) and groups[g_at][1] < network:
                g_at += 1
            j, reasons, expiries = g_at, [], []
            while j < len(groups) and groups[j][0] <= last:
                reasons.append(groups[j][2] or "manual block")
                expiries.append(groups[j][3])
                j += 1
            value, scope = _text(family, network, prefix)
            expires = None if names or None in expiries else max(e for e in expiries if e is not None)
            out[value] = Decision(
                value,
                scope,
                "lists" if names else "cscli",
                ", ".join([*names, *dict.fromkeys(reasons)]),
                expires,
                family,
                network,
                last,
            )
    return out


@dataclass(frozen=True, slots=True)
class Filters:
    """The stream's filters, as bouncers send them (comma-separated, case-insensitive scopes)."""

    scopes: frozenset[str] = frozenset({"ip"})
    origins: frozenset[str] | None = None
    containing: tuple[str, ...] = ()
    not_containing: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, scopes: str | None, origins: str | None, containing: str | None, not_containing: str | None
    ) -> Filters:
        """From the query parameters; no ``scopes``: ``ip`` only, as CrowdSec's default."""

        def items(text: str | None) -> list[str]:
            return [t.strip() for t in (text or "").split(",") if t.strip()]

        return cls(
            frozenset(s.lower() for s in items(scopes)) or frozenset({"ip"}),
            frozenset(items(origins)) or None,
            tuple(items(containing)),
            tuple(items(not_containing)),
        )

    def admits(self, decision: Decision) -> bool:
        """Whether ``decision`` passes every filter."""
        if decision.scope.lower() not in self.scopes:
            return False
        if self.origins is not None and decision.origin not in self.origins:
            return False
        if self.containing and not any(c in decision.scenario for c in self.containing):
            return False
        return not any(c in decision.scenario for c in self.not_containing)


class DecisionIndex:
    """The decisions of a set in address order, to find those overlapping a range."""

    def __init__(self, decisions: Mapping[str, Decision]) -> None:
        ordered = sorted(decisions.values(), key=lambda d: (d.family, d.first))
        self._by_family = {f: [d for d in ordered if d.family == f] for f in (V4, V6)}
        self._lasts = {f: [d.last for d in held] for f, held in self._by_family.items()}
        self._firsts = {f: [d.first for d in held] for f, held in self._by_family.items()}

    def overlapping(self, family: int, first: int, last: int) -> list[Decision]:
        """The decisions overlapping ``first..last`` (they are disjoint: a contiguous run). O(log n)."""
        start = bisect_left(self._lasts[family], first)
        end = bisect_right(self._firsts[family], last)
        return self._by_family[family][start:end]


def diff(
    older: Mapping[str, Decision], newer: Mapping[str, Decision]
) -> tuple[list[Decision], list[Decision]]:
    """(new, deleted): decisions of ``newer`` not in ``older`` by value, and the reverse."""
    return [d for v, d in newer.items() if v not in older], [d for v, d in older.items() if v not in newer]
