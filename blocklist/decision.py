"""The one decision: allow override, then manual block, then reputation, then feeds.

A :class:`ControlView` is what one process holds of the mutable sources:
the compiled overrides and, per reputation key, the moment its block ends.
:meth:`ControlView.verdict` is the fixed precedence every consumer uses
(``/check_ip``, explain, and what later reads the same data); the feeds
come last, from the served version's index, and only when no override or
reputation decided.

The view is updated in place by one task per process (see
:mod:`ipchecking.controlsync`) with whole-value assignments, so a lookup
running between two updates sees either the old or the new state of each
source.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from blocklist.addresses import V4, parse_address, parse_network
from blocklist.aggregate import merged
from blocklist.overrides import Action, CompiledOverrides, Override, compile_overrides
from blocklist.reputation import reputation_key
from blocklist.slots import SLOT_SHIFT

Verdict = Literal["allow", "block", "reputation"]
#: What decided an answer, in precedence order; ``feeds`` and None come from the index.
DECIDERS = ("allow", "block", "reputation", "feeds")


@dataclass(frozen=True, slots=True)
class Prepared:
    """Overrides compiled for lookups, and each one's bounds for explain."""

    compiled: CompiledOverrides
    bounds: dict[int, tuple[int, int, int]]


class ControlView:
    """Overrides and reputation blocks held in memory for lookups.

    ``clock`` gives seconds since the epoch (injectable for tests).
    """

    def __init__(self, v6_prefix: int = 64, clock: Callable[[], float] = time.time) -> None:
        self.v6_prefix = v6_prefix
        self.clock = clock
        self.overrides: dict[int, Override] = {}
        self._bounds: dict[int, tuple[int, int, int]] = {}
        self.compiled = CompiledOverrides()
        #: Reputation key value -> block end (ms), per family.
        self.blocked4: dict[int, int] = {}
        self.blocked6: dict[int, int] = {}
        #: False while nothing is held: the hot path then skips the view entirely.
        self.active = False
        #: When the overrides held last changed (seconds since the epoch; 0: never held any).
        self.overrides_changed_at = 0.0

    def verdict(self, family: int, value: int, now: float | None = None) -> Verdict | None:
        """What the mutable sources decide for the address at ``now`` (default: the clock); None: ask
        the feeds.

        One binary search over the overrides' overlay (narrowed to the /16 for
        IPv4), one dictionary lookup of the reputation key; the clock is read
        only when one of them holds the address.
        """
        if family == V4:
            overlay = self.compiled.v4
            until = self.blocked4.get(value)
        else:
            overlay = self.compiled.v6
            until = self.blocked6.get(value >> (128 - self.v6_prefix))
        i = -1
        firsts = overlay.firsts
        if firsts:  # Overlay.find, inlined: this runs on every lookup
            slots = overlay.slots
            if slots:
                slot = value >> SLOT_SHIFT
                i = bisect_right(firsts, value, slots[slot], slots[slot + 1]) - 1
            else:
                i = bisect_right(firsts, value) - 1
            if i >= 0 and value > overlay.lasts[i]:
                i = -1
        if i < 0 and until is None:
            return None
        if now is None:
            now = self.clock()
        if i >= 0:
            if overlay.allows[i] > now:
                return "allow"
            if overlay.blocks[i] > now:
                return "block"
        if until is not None and until > now * 1000:
            return "reputation"
        return None

    def applying(self, family: int, value: int, now: float) -> list[Override]:
        """The active overrides holding the address (allows first), for explain. O(n)."""
        hits = []
        bounds = self._bounds
        for item in self.overrides.values():
            fam, first, last = bounds.get(item.id) or item.bounds
            if fam == family and first <= value <= last and item.active(now):
                hits.append(item)
        return sorted(hits, key=lambda o: (o.action != "allow", o.id))

    def override_ranges(self, family: int, action: Action, now: float) -> list[tuple[int, int]]:
        """The ranges of ``family`` that active overrides of ``action`` cover, sorted and merged
        (for exports). O(n log n) in the overrides held."""
        bounds = self._bounds
        spans = sorted(
            (first, last)
            for item in self.overrides.values()
            if item.action == action and item.active(now)
            for fam, first, last in (bounds.get(item.id) or item.bounds,)
            if fam == family
        )
        return list(merged(spans))

    # -- updates (one task per process) -----------------------------------------

    def compile(self, overrides: dict[int, Override]) -> Prepared:
        """The compiled form of ``overrides`` (run it off the event loop: O(n log n))."""
        return Prepared(
            compile_overrides(overrides.values(), self.clock()), {i: o.bounds for i, o in overrides.items()}
        )

    def install(self, overrides: dict[int, Override], prepared: Prepared) -> None:
        """Serve ``overrides`` (prepared by :meth:`compile`) from now on."""
        if overrides != self.overrides:
            # The first set held dates from its newest override; later ones from now.
            first = not self.overrides and not self.overrides_changed_at
            newest = max((o.created_at for o in overrides.values()), default=0.0)
            self.overrides_changed_at = newest if first else self.clock()
        self._bounds = prepared.bounds
        self.overrides = overrides
        self.compiled = prepared.compiled
        self._note_active()

    def build_blocked(self, blocked: Iterable[tuple[str, int]]) -> tuple[dict[int, int], dict[int, int]]:
        """Per family, key value -> block end, from ``(key text, end ms)`` pairs; keys that do not
        parse are left out (an IPv6 key stored under another prefix setting is read as the first
        network of the current length it holds). O(n): run it off the event loop.
        """
        four: dict[int, int] = {}
        six: dict[int, int] = {}
        for key, until in blocked:
            try:
                family, keyed = self.parse_key(key)
            except ValueError:  # InvalidAddress is a ValueError
                continue
            (four if family == V4 else six)[keyed] = until
        return four, six

    def replace_blocked(self, tables: tuple[dict[int, int], dict[int, int]]) -> None:
        """Replace every reputation block with the tables :meth:`build_blocked` made."""
        self.blocked4, self.blocked6 = tables
        self._note_active()

    def set_blocked(self, key: str, until: int | None) -> None:
        """Set (or, with None, lift) one reputation block."""
        family, keyed = self.parse_key(key)
        table = self.blocked4 if family == V4 else self.blocked6
        if until is None:
            table.pop(keyed, None)
        else:
            table[keyed] = until
        self._note_active()

    def ended_blocks(self) -> list[tuple[dict[int, int], int]]:
        """The reputation blocks that have ended, as (table, key) pairs. O(n): run it off the event
        loop (it reads copies of the tables, so concurrent changes are safe)."""
        now_ms = self.clock() * 1000
        return [
            (table, keyed)
            for table in (self.blocked4, self.blocked6)
            for keyed, until in table.copy().items()
            if until <= now_ms
        ]

    def prune(self, ended: list[tuple[dict[int, int], int]]) -> None:
        """Forget the blocks :meth:`ended_blocks` found, unless one was set again since
        (memory only: lookups ignore ended blocks already)."""
        now_ms = self.clock() * 1000
        for table, keyed in ended:
            if table.get(keyed, now_ms + 1) <= now_ms:
                del table[keyed]
        self._note_active()

    def parse_key(self, key: str) -> tuple[int, int]:
        """(family, key value) of a reputation key's text (see :func:`~blocklist.reputation.key_text`)."""
        if "/" in key:
            family, first, _ = parse_network(key)
            return reputation_key(family, first, self.v6_prefix)
        return reputation_key(*parse_address(key), self.v6_prefix)

    def _note_active(self) -> None:
        self.active = bool(len(self.compiled) or self.blocked4 or self.blocked6)
