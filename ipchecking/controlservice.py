"""Operator control as the API routes use it: checks, the store, and this process's view.

Both the ``/v1`` routes and the iprepd-compatible ones go through one
:class:`ControlService`, so a change made either way is checked, stored,
audited and applied to this process's lookups the same way. Each change
is applied locally as soon as the store acknowledges it (the process's next
lookup sees it); other processes pick it up from the change log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blocklist.addresses import V4, parse_address
from blocklist.control import ChangeEntry, ControlStore, OverrideDraft, ReportItem
from blocklist.decision import ControlView
from blocklist.errors import BlocklistError
from blocklist.feedparsers import clean_label
from blocklist.history import iso_moment
from blocklist.overrides import REASON_WIDTH, Action, Override, normalize_network, prefix_len
from blocklist.reputation import (
    COMMENT_WIDTH,
    MAX_SUPPRESS_SECONDS,
    Note,
    State,
    block_end,
    blocked_until,
    key_text,
    reputation_key,
    score_at,
)
from blocklist.settings import Settings
from ipchecking.controlsync import ControlSync

#: The furthest expiry an override may have (beyond it: omit the expiry).
MAX_OVERRIDE_SECONDS = 100 * 365 * 86400


class Refused(BlocklistError):
    """A request is well-formed but cannot be accepted; ``error`` and ``reason`` say why."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Keyed:
    """An address and the reputation key it counts against."""

    family: int
    value: int
    key: str


class ControlService:
    """Overrides, reports and reputation for one process; see the module docstring."""

    def __init__(self, settings: Settings, store: ControlStore, sync: ControlSync) -> None:
        self.settings = settings
        self.store = store
        self.sync = sync
        self.view: ControlView = sync.view
        self.policy = settings.reputation_policy

    def now(self) -> float:
        """The service's clock, seconds since the epoch."""
        return self.view.clock()

    # -- overrides ----------------------------------------------------------

    def draft(
        self, network: str, action: Action, reason: str, expires_in: float | None, expires_at: float | None
    ) -> OverrideDraft:
        """A checked override request; raises :class:`Refused` or ``InvalidAddress``."""
        text, (family, first, last) = normalize_network(network)
        now = self.now()
        if expires_in is not None and expires_at is not None:
            raise Refused("invalid_expiry", "give expires_in or expires_at, not both")
        if expires_in is not None:
            expires_at = now + expires_in
        if expires_at is not None and expires_at <= now:
            raise Refused("invalid_expiry", "expires_at is in the past")
        if expires_at is not None and expires_at > now + MAX_OVERRIDE_SECONDS:
            raise Refused(
                "invalid_expiry", "expires_at is more than 100 years away; omit it for a permanent entry"
            )
        broadest = self.settings.broadest_prefix_v4 if family == V4 else self.settings.broadest_prefix_v6
        if action == "block" and prefix_len(family, first, last) < broadest:
            raise Refused(
                "too_broad",
                f"a manual block broader than /{broadest} is refused (BLOCKLIST_BROADEST_PREFIX_V{family})",
            )
        return OverrideDraft(text, action, clean_label(reason, REASON_WIDTH), expires_at)

    async def add_override(self, draft: OverrideDraft, actor: str) -> Override:
        """Store, audit and apply a new override."""
        item = await self.store.add_override(draft, actor, self.now())
        await self.sync.apply([ChangeEntry("override", str(item.id), item.encode())])
        await self.store.settle()
        return item

    async def delete_override(self, override_id: int, actor: str) -> Override | None:
        """Remove, audit and stop applying an override; None if unknown."""
        item = await self.store.delete_override(override_id, actor, self.now())
        if item is not None:
            await self.sync.apply([ChangeEntry("override", str(override_id), None)])
            await self.store.settle()
        return item

    # -- reputation -----------------------------------------------------------

    def keyed(self, ip: str) -> Keyed:
        """The address and its reputation key; raises :class:`~blocklist.errors.InvalidAddress`."""
        family, value = parse_address(ip)
        prefix = self.policy.v6_prefix
        return Keyed(family, value, key_text(*reputation_key(family, value, prefix), prefix))

    def report_item(
        self, ip: str, violation: str, *, comment: str, suppress: int, reporter: str, now_ms: int
    ) -> ReportItem:
        """A checked report; raises :class:`Refused` or :class:`~blocklist.errors.InvalidAddress`."""
        keyed = self.keyed(ip)
        kind = self.settings.violation(violation)
        if kind is None:
            known = ", ".join(v.name for v in self.settings.violations) or "none"
            raise Refused("unknown_violation", f"unknown violation (configured: {known})")
        if not 0 <= suppress <= MAX_SUPPRESS_SECONDS:
            raise Refused("invalid_suppress_recovery", f"suppress_recovery is 0..{MAX_SUPPRESS_SECONDS} s")
        note = Note(now_ms, kind.name, clean_label(comment, COMMENT_WIDTH), reporter)
        return ReportItem(keyed.key, kind.name, kind.penalty, kind.decrease_limit, suppress * 1000, note)

    async def report(self, items: list[ReportItem], now_ms: int) -> list[State]:
        """Apply reports (one store call); each key's state afterwards, applied locally."""
        states = await self.store.report(items, now_ms)
        for item, state in zip(items, states, strict=True):
            self._apply_block(item.key, state, now_ms)
        if items:
            await self.store.settle()
        return states

    async def set_reputation(self, key: str, state: State | None, actor: str) -> None:
        """Replace or delete a key's state (audited) and apply its block."""
        now = self.now()
        await self.store.set_reputation(key, state, actor, now)
        self._apply_block(key, state, int(now * 1000))
        await self.store.settle()

    def _apply_block(self, key: str, state: State | None, now_ms: int) -> None:
        retention = self.settings.personal_retention_ms
        self.view.set_blocked(key, block_end(state, now_ms, self.policy, retention))

    def reputation_body(self, key: str, state: State | None, now_ms: int) -> dict[str, Any]:
        """What explain and report answers show of a key's reputation."""
        score = score_at(state, now_ms, self.policy)
        until = blocked_until(state, now_ms, self.policy)
        return {
            "key": key,
            "score": score,
            "blocked": until is not None,
            "blocked_until": iso_moment(until / 1000) if until is not None else None,
            "recovery_starts": iso_moment(state.start / 1000) if state and score < 100 else None,
            "reports": [
                {
                    "at": iso_moment(n.at / 1000),
                    "violation": n.violation,
                    "comment": n.comment,
                    "reporter": n.reporter,
                }
                for n in (state.notes if state else ())
            ],
        }


def override_body(item: Override) -> dict[str, Any]:
    """An override as the API shows it."""
    return {
        "id": item.id,
        "network": item.network,
        "action": item.action,
        "reason": item.reason,
        "created_at": iso_moment(item.created_at),
        "expires_at": iso_moment(item.expires_at),
        "created_by": item.created_by,
    }
