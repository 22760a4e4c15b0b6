"""Reputation from reports, as iprepd computes it, evaluated lazily.

An address (an IPv6 one by its /64, see :func:`reputation_key`) starts at
100. A report of a violation lowers it by the violation's penalty, never
below the violation's decrease limit, and not at all when it is already at
or below that limit. From its reference moment (the last change, or later
when recovery is suppressed) it recovers by ``points`` every ``interval``,
in whole steps, up to 100. Nothing runs while an address is idle: the score
at any moment is a function of the stored state (:func:`score_at`), so the
moment a block lifts is known when it starts (:func:`blocked_until`), and
state that has recovered fully is equivalent to no state at all.

Moments are integers of milliseconds since the epoch, so the same
arithmetic done in Redis's Lua (doubles) and here gives the same answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from blocklist.addresses import V4, format_address
from blocklist.errors import ConfigError

FULL = 100
#: iprepd's upper bound of ``suppress_recovery``: 14 days.
MAX_SUPPRESS_SECONDS = 14 * 86400
#: Reports kept per address (the newest ones), for explain.
NOTES_KEPT = 10
COMMENT_WIDTH = 500


@dataclass(frozen=True, slots=True)
class Violation:
    """A kind of report: how many points it costs and the lowest score it can cause."""

    name: str
    penalty: int
    decrease_limit: int


def parse_violations(text: str) -> tuple[Violation, ...]:
    """``name:penalty:limit,...`` (``BLOCKLIST_VIOLATIONS``); raises :class:`ConfigError`."""
    out: list[Violation] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 3 or not parts[0] or not all(p.isdigit() for p in parts[1:]):
            raise ConfigError(f"violation {item!r} is not name:penalty:decrease_limit")
        penalty, limit = int(parts[1]), int(parts[2])
        if not (0 <= penalty <= FULL and 0 <= limit <= FULL):
            raise ConfigError(f"violation {item!r}: penalty and limit are 0..100")
        out.append(Violation(parts[0], penalty, limit))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"violation names must be unique: {names}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Policy:
    """How scores recover and when they block."""

    points: int
    interval_ms: int
    block_below: int
    v6_prefix: int = 64

    def __post_init__(self) -> None:
        if self.points < 1 or self.interval_ms < 1:
            raise ConfigError("reputation recovery needs at least 1 point per interval of at least 1 ms")


@dataclass(frozen=True, slots=True)
class Note:
    """One report as kept with the state (the newest :data:`NOTES_KEPT`)."""

    at: int
    violation: str
    comment: str
    reporter: str


@dataclass(frozen=True, slots=True)
class State:
    """Stored reputation of one key.

    ``score`` held since ``updated``; recovery counts from ``start`` =
    max(``updated``, ``decay_after``).
    """

    score: int
    updated: int
    decay_after: int = 0
    reviewed: bool = False
    notes: tuple[Note, ...] = ()

    @property
    def start(self) -> int:
        """Moment from which recovery counts."""
        return max(self.updated, self.decay_after)


def score_at(state: State | None, now: int, policy: Policy) -> int:
    """The score at ``now`` (100 for no state). O(1)."""
    if state is None:
        return FULL
    if state.score >= FULL or now <= state.start:
        return min(state.score, FULL)
    steps = (now - state.start) // policy.interval_ms
    return min(FULL, state.score + steps * policy.points)


def moment_reaching(state: State, target: int, policy: Policy) -> int:
    """The first moment the score is at least ``target`` (the state's start if it already is)."""
    missing = target - state.score
    if missing <= 0:
        return state.start
    return state.start + math.ceil(missing / policy.points) * policy.interval_ms


def blocked_until(state: State | None, now: int, policy: Policy) -> int | None:
    """The moment the block on this key lifts, or None if it is not blocked at ``now``."""
    if state is None or score_at(state, now, policy) >= policy.block_below:
        return None
    return moment_reaching(state, policy.block_below, policy)


def expires_at(state: State, policy: Policy, retention_ms: int) -> int:
    """When the state can be deleted: fully recovered, or ``retention_ms`` after its last change.

    ``retention_ms`` 0 keeps it until it has recovered.
    """
    recovered = moment_reaching(state, FULL, policy)
    if retention_ms <= 0:
        return recovered
    return min(recovered, state.updated + retention_ms)


def block_end(state: State | None, now: int, policy: Policy, retention_ms: int) -> int | None:
    """When the stored block on this key ends: :func:`blocked_until`, but never after the state
    itself is deleted (:func:`expires_at`). None if it is not blocked at ``now``."""
    until = blocked_until(state, now, policy)
    if state is None or until is None:
        return None
    return min(until, expires_at(state, policy, retention_ms))


def apply_violation(
    state: State | None, violation: Violation, note: Note, policy: Policy, suppress_ms: int = 0
) -> State:
    """The state after one report at ``note.at`` (iprepd's rule, see the module docstring).

    A suppression only extends the current one, never shortens it.
    """
    now = note.at
    current = score_at(state, now, policy)
    if current > violation.decrease_limit:
        current = max(violation.decrease_limit, current - violation.penalty)
    decay_after = state.decay_after if state is not None and state.decay_after > now else 0
    if suppress_ms > 0:
        decay_after = max(decay_after, now + suppress_ms)
    notes = (note, *(state.notes if state else ()))[:NOTES_KEPT]
    reviewed = state.reviewed if state is not None and current < FULL else False
    return State(current, now, decay_after, reviewed, notes)


def set_score(
    state: State | None, score: int, now: int, *, decay_after: int = 0, reviewed: bool = False
) -> State:
    """The state after an operator sets the score (iprepd's ``PUT``); reports are kept."""
    notes = state.notes if state else ()
    return State(score, now, decay_after if decay_after > now else 0, reviewed, notes)


def drop_old_notes(state: State, horizon: int) -> State:
    """``state`` without the notes from before ``horizon`` (retention of personal data)."""
    kept = tuple(n for n in state.notes if n.at >= horizon)
    return state if len(kept) == len(state.notes) else replace(state, notes=kept)


def reputation_key(family: int, value: int, v6_prefix: int) -> tuple[int, int]:
    """The (family, value) reports count against: the IPv4 address, or its IPv6 /``v6_prefix``."""
    if family == V4:
        return V4, value
    return 6, value >> (128 - v6_prefix)


def key_text(family: int, keyed: int, v6_prefix: int) -> str:
    """Display and storage name of a key: ``1.2.3.4`` or ``2001:db8::/64``."""
    if family == V4:
        return format_address(V4, keyed)
    return f"{format_address(6, keyed << (128 - v6_prefix))}/{v6_prefix}"
