"""Operator control data: what the stores hold and the contract both implement.

Overrides, reputation, API keys and the audit log are mutable, unlike feed
versions. Each mode stores them durably (:mod:`blocklist.controlsqlite` in
the state directory, :mod:`blocklist.controlredis` on the Redis primary)
and logs every change that lookups depend on as a :class:`ChangeEntry`, so
each API process keeps its in-memory view (:mod:`blocklist.decision`) in
step by reading the log from its cursor, and reloads a whole
:class:`Snapshot` when its cursor is older than what the log keeps.

Change entries carry absolute state (an override's document, a key's
block end), never deltas, so applying one twice is harmless.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from blocklist.errors import BlocklistError
from blocklist.overrides import Action, Override
from blocklist.reputation import Note, State

#: Ordered: a scope grants those before it. ``bouncer`` keys read CrowdSec decisions only.
Scope = Literal["bouncer", "read", "report", "admin"]
SCOPES: tuple[Scope, ...] = ("bouncer", "read", "report", "admin")
#: A change's kind: an override put or dropped, a reputation block set or
#: lifted, or the key set changed (reload it).
ChangeKind = Literal["override", "blocked", "keys"]
KEY_PREFIX = "blk_"


class Conflict(BlocklistError):
    """The change conflicts with stored state (a key name already taken)."""


@dataclass(frozen=True, slots=True)
class OverrideDraft:
    """An override as requested, before the store gives it an id."""

    network: str
    action: Action
    reason: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: never the key itself, only its SHA-256 digest."""

    name: str
    scope: Scope
    digest: str
    created_at: float
    created_by: str

    def encode(self) -> str:
        """The stored JSON document."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, doc: str | bytes) -> ApiKey:
        """Inverse of :meth:`encode`."""
        data: dict[str, Any] = json.loads(doc)
        return cls(**data)


def new_key() -> str:
    """A fresh API key: a prefix that makes it recognisable, then 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded change: who (the key's name), when, what, and the details."""

    id: str
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        """The stored JSON document (without the id, which the store assigns)."""
        data = asdict(self)
        del data["id"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, entry_id: str, doc: str | bytes) -> AuditEntry:
        """An entry from its id and stored document."""
        data: dict[str, Any] = json.loads(doc)
        return cls(id=entry_id, **data)


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One logged change; ``data`` is None for a removal.

    ``override``: key = the id, data = the document; ``blocked``: key = the
    reputation key's text, data = the block's end (ms); ``keys``: reload.
    """

    kind: ChangeKind
    key: str
    data: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything lookups need, as of ``cursor`` (then follow the log from it)."""

    cursor: str
    overrides: Sequence[Override]
    #: (reputation key text, block end in ms) of every key blocked at the time of reading.
    blocked: Sequence[tuple[str, int]]
    keys: Sequence[ApiKey]


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One report, checked: the key it counts against and its violation's terms."""

    key: str
    violation: str
    penalty: int
    decrease_limit: int
    suppress_ms: int
    note: Note


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, and the total."""

    total: int
    items: Sequence[Any]


def override_audit(item: Override, actor: str, now: float, action: str) -> AuditEntry:
    """The audit entry of an override created, deleted or expired."""
    detail: dict[str, Any] = {
        "network": item.network,
        "action": item.action,
        "reason": item.reason,
        "expires_at": item.expires_at,
    }
    return AuditEntry("", now, actor, action, str(item.id), detail)


def encode_state(state: State) -> str:
    """The stored JSON of a reputation state."""
    return json.dumps(
        {
            "s": state.score,
            "u": state.updated,
            "d": state.decay_after,
            "r": state.reviewed,
            "n": [[n.at, n.violation, n.comment, n.reporter] for n in state.notes],
        },
        separators=(",", ":"),
    )


def decode_state(doc: str | bytes) -> State:
    """Inverse of :func:`encode_state` (an empty ``n`` may come back from Lua as ``{}``)."""
    data: dict[str, Any] = json.loads(doc)
    notes = tuple(Note(int(n[0]), str(n[1]), str(n[2]), str(n[3])) for n in (data.get("n") or []))
    return State(int(data["s"]), int(data["u"]), int(data.get("d") or 0), bool(data.get("r")), notes)


class ControlStore(Protocol):
    """Durable operator data of one mode. Every method may raise the backend's errors.

    ``actor`` is the name of the key that asked (for the audit log). Moments
    are seconds (overrides, audit) or milliseconds (reputation), as in the
    records.
    """

    async def add_override(self, draft: OverrideDraft, actor: str, now: float) -> Override:
        """Store a new override with a fresh id; audited."""
        ...

    async def delete_override(self, override_id: int, actor: str, now: float) -> Override | None:
        """Remove an override; the removed one, or None if unknown. Audited."""
        ...

    async def get_override(self, override_id: int) -> Override | None:
        """One override, expired or not, until it is cleaned up."""
        ...

    async def list_overrides(self, action: Action | None, offset: int, limit: int) -> Page:
        """Overrides by id, optionally of one action."""
        ...

    async def report(self, items: Sequence[ReportItem], now_ms: int) -> list[State]:
        """Apply reports in order, atomically per key; each key's state afterwards."""
        ...

    async def reputation(self, key: str) -> State | None:
        """The stored state of one reputation key."""
        ...

    async def set_reputation(self, key: str, state: State | None, actor: str, now: float) -> None:
        """Replace (None: delete) a key's state; audited."""
        ...

    async def create_key(self, key: ApiKey, actor: str) -> None:
        """Store a key; raises :class:`Conflict` if the name is taken. Audited."""
        ...

    async def revoke_key(self, name: str, actor: str, now: float) -> bool:
        """Remove a key; False if unknown. Audited."""
        ...

    async def list_keys(self) -> list[ApiKey]:
        """Every stored key, by name."""
        ...

    async def audit(self, before: str | None, limit: int) -> list[AuditEntry]:
        """Audit entries newest first, strictly older than the entry ``before``."""
        ...

    async def snapshot(self, now_ms: int) -> Snapshot:
        """Everything lookups need, and the cursor to follow changes from."""
        ...

    async def changes(self, cursor: str, wait: float) -> tuple[str, list[ChangeEntry]] | None:
        """Changes after ``cursor`` (waiting up to ``wait`` s for one) and the new cursor.

        None when the log no longer holds what follows ``cursor``: reload a snapshot.
        """
        ...

    async def purge(self, now: float) -> int:
        """Delete expired overrides, recovered or out-of-retention reputation, old audit and log entries."""
        ...

    async def settle(self) -> None:
        """Wait, bounded, until the writes made so far are replicated where that applies;
        called after a change is applied locally and before it is acknowledged. Never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
