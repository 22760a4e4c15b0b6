"""Both control stores against the pure reputation model, and their change logs.

The Redis store applies reports in Lua; the SQLite one in Python through
:mod:`blocklist.reputation`. Random report sequences must leave the same
states, the same blocks and the same expiries in both, and in the model.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from blocklist import rediskeys as keys
from blocklist.control import ChangeEntry, ControlStore, OverrideDraft, ReportItem
from blocklist.controlredis import RedisControl
from blocklist.controlsqlite import SqliteControl
from blocklist.reputation import (
    Note,
    Policy,
    State,
    Violation,
    apply_violation,
    blocked_until,
    drop_old_notes,
    expires_at,
)
from tests.redisserver import RedisServer, redis_server

pytestmark = pytest.mark.integration

POLICY = Policy(points=3, interval_ms=10_000, block_below=50)
VIOLATIONS = [Violation("failed_login", 5, 50), Violation("spam", 20, 0), Violation("scan", 40, 0)]
RETENTION_MS = 3_600_000
START = 1_800_000_000_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as running:
        yield running


def item(key: str, violation: Violation, at: int, suppress_ms: int) -> ReportItem:
    note = Note(at, violation.name, f"comment {at}", "tester")
    return ReportItem(key, violation.name, violation.penalty, violation.decrease_limit, suppress_ms, note)


def model_run(batches: list[list[ReportItem]]) -> dict[str, State]:
    states: dict[str, State] = {}
    for batch in batches:
        for one in batch:
            violation = Violation(one.violation, one.penalty, one.decrease_limit)
            new = apply_violation(states.get(one.key), violation, one.note, POLICY, one.suppress_ms)
            states[one.key] = drop_old_notes(new, one.note.at - RETENTION_MS)
    return states


def random_batches(seed: int) -> list[list[ReportItem]]:
    rng = random.Random(seed)
    at = START
    batches = []
    for _ in range(rng.randint(3, 12)):
        at += rng.choice([0, 1, 999, 10_000, 35_000, 200_000, 2_000_000])
        batch = [
            item(
                rng.choice(["192.0.2.1", "192.0.2.2", "2001:db8::/64"]),
                rng.choice(VIOLATIONS),
                at,
                rng.choice([0, 0, 0, 15_000, 120_000]),
            )
            for _ in range(rng.randint(1, 4))
        ]
        batches.append(batch)
    return batches


def test_lua_and_python_reputation_agree_on_random_report_sequences(
    server: RedisServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        client = Redis(port=server.port)
        clock = [START / 1000]
        try:
            for seed in range(40):
                await client.flushall()
                clock[0] = START / 1000
                redis_store = RedisControl(
                    lambda: client, lambda: client, POLICY, RETENTION_MS, clock=lambda: clock[0]
                )
                sqlite_store = SqliteControl(
                    tmp_path / f"s{seed}", POLICY, RETENTION_MS, clock=lambda: clock[0]
                )
                batches = random_batches(seed)
                for batch in batches:
                    now_ms = batch[0].note.at
                    clock[0] = now_ms / 1000
                    from_redis = await redis_store.report(batch, now_ms)
                    from_sqlite = await sqlite_store.report(batch, now_ms)
                    assert from_redis == from_sqlite, seed
                model = model_run(batches)
                for key, state in model.items():
                    stored = await redis_store.reputation(key)
                    expiry = expires_at(state, POLICY, RETENTION_MS)
                    if expiry <= state.updated:  # recovered as written: deleted
                        assert stored is None
                        continue
                    assert stored == state, (seed, key)
                    assert await sqlite_store.reputation(key) == state
                    until = blocked_until(state, state.updated, POLICY)
                    score = await client.zscore(keys.REPUTATION_BLOCKED, key)
                    assert score == (min(until, expiry) if until is not None else None), (seed, key)
                    ttl_at = await client.pexpiretime(keys.reputation_state_key(key))
                    assert ttl_at == expiry
                await sqlite_store.aclose()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def store_of(kind: str, tmp_path: Path, client: Redis, policy: Policy) -> ControlStore:
    """The store of ``kind`` (``sqlite`` in ``tmp_path``, or ``redis`` on ``client``)."""
    if kind == "sqlite":
        return SqliteControl(tmp_path / "state", policy, RETENTION_MS)
    return RedisControl(lambda: client, lambda: client, policy, RETENTION_MS)


async def follow_all(store: ControlStore, cursor: str) -> tuple[str, list[ChangeEntry]]:
    seen: list[ChangeEntry] = []
    while True:
        result = await store.changes(cursor, 0.05)
        assert result is not None
        cursor, entries = result
        if not entries:
            return cursor, seen
        seen += entries


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_the_change_log_carries_blocks_and_overrides_from_a_snapshot_on(
    kind: str, server: RedisServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        client = Redis(port=server.port)
        store = store_of(kind, tmp_path, client, POLICY)
        try:
            now_ms = START
            blocker = item("192.0.2.9", VIOLATIONS[2], now_ms, 0)
            await store.report([blocker], now_ms)
            snapshot = await store.snapshot(now_ms)
            assert snapshot.blocked == []  # 60: not blocked yet
            created = await store.add_override(OverrideDraft("192.0.2.0/24", "allow", "x", None), "me", 1.0)
            await store.report([item("192.0.2.9", VIOLATIONS[2], now_ms + 1, 0)], now_ms + 1)
            await store.delete_override(created.id, "me", 2.0)
            cursor, entries = await follow_all(store, snapshot.cursor)
            assert [(e.kind, e.key, e.data is None) for e in entries] == [
                ("override", str(created.id), False),
                ("blocked", "192.0.2.9", False),
                ("override", str(created.id), True),
            ]
            assert (await store.snapshot(now_ms + 1)).cursor == cursor
            assert (await store.snapshot(now_ms + 1)).blocked[0][0] == "192.0.2.9"
        finally:
            await store.aclose()
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_purge_drops_old_report_comments_and_expired_overrides(
    kind: str, server: RedisServer, tmp_path: Path
) -> None:
    """Comments are personal data: gone once older than the retention, while newer ones stay."""

    slow = Policy(points=1, interval_ms=3_600_000, block_below=50)

    async def scenario() -> None:
        client = Redis(port=server.port)
        store = store_of(kind, tmp_path, client, slow)
        try:
            # Real moments: Redis expires keys and stamps audit entries by its own clock.
            first = int(time.time() * 1000) - RETENTION_MS - 120_000
            await store.report([item("192.0.2.9", VIOLATIONS[0], first, 0)], first)
            later = first + 50 * 60_000
            await store.report([item("192.0.2.9", VIOLATIONS[0], later, 0)], later)
            made = await store.add_override(
                OverrideDraft("192.0.2.0/24", "block", "x", first / 1000 + 60), "me", first / 1000
            )
            kept = await store.add_override(
                OverrideDraft("192.0.2.7/32", "allow", "y", None), "me", first / 1000
            )
            purge_at = (first + RETENTION_MS + 60_000) / 1000
            assert await store.purge(purge_at) >= 1
            state = await store.reputation("192.0.2.9")
            assert state is not None
            assert [n.at for n in state.notes] == [later]
            assert await store.get_override(made.id) is None
            assert await store.get_override(kept.id) == kept
            actions = [e.action for e in await store.audit(None, 10)]
            assert actions[0] == "override.expire"
        finally:
            await store.aclose()
            await client.aclose()

    asyncio.run(scenario())


def test_a_follower_behind_a_trimmed_redis_log_is_told_to_reload(server: RedisServer) -> None:
    async def scenario() -> None:
        client = Redis(port=server.port)
        await client.config_set("stream-node-max-entries", 2)  # approximate trimming works per node
        store = RedisControl(lambda: client, lambda: client, POLICY, RETENTION_MS, log_keep=4)
        try:
            first = await store.add_override(OverrideDraft("192.0.2.1/32", "block", "", None), "me", 1.0)
            snapshot = await store.snapshot(START)
            current = await store.changes(snapshot.cursor, 0.01)
            assert current == (snapshot.cursor, [])  # nothing trimmed, nothing new
            for i in range(2, 30):
                await store.add_override(OverrideDraft(f"192.0.2.{i}/32", "block", "", None), "me", 1.0)
            assert await store.changes(snapshot.cursor, 0.01) is None
            fresh = await store.snapshot(START)
            assert len(fresh.overrides) == 29
            assert first in fresh.overrides
            assert await store.changes(fresh.cursor, 0.01) == (fresh.cursor, [])
        finally:
            await client.aclose()

    asyncio.run(scenario())
