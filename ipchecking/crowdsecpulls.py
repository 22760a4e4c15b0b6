"""Where each bouncer key's last pull stands, shared by every API process.

A pull point is the version and the override state a key's previous
``/crowdsec/v1/decisions/stream`` answer was computed from; the next pull
answers the difference. Override states are kept once, by digest, however
many keys share them. Embedded mode: ``<state_dir>/crowdsec.sqlite``
(every worker of the instance shares it); distributed mode: Redis (the
primary), so a bouncer may pull from any replica.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

from blocklist.crowdsec import OverrideState
from blocklist.rediskeys import PREFIX

FILENAME = "crowdsec.sqlite"
PULLS_KEY = PREFIX + "crowdsec:pulls"
#: An override state unused this long is forgotten (its keys then start over).
STATE_TTL = 30 * 86400
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pulls (name TEXT PRIMARY KEY, version INTEGER, digest TEXT, at REAL);
CREATE TABLE IF NOT EXISTS states (digest TEXT PRIMARY KEY, doc TEXT);
"""


def state_key(digest: str) -> str:
    """The Redis key of one override state."""
    return f"{PREFIX}crowdsec:state:{digest}"


@dataclass(frozen=True, slots=True)
class PullPoint:
    """What a key's previous answer was computed from."""

    version: int
    overrides: OverrideState


class PullStore(Protocol):
    """Pull points by key name."""

    async def get(self, name: str) -> PullPoint | None:
        """The key's pull point, or None (never pulled, or its state is forgotten)."""
        ...

    async def put(self, name: str, point: PullPoint, now: float) -> None:
        """Record the key's new pull point."""
        ...


class SqlitePulls:
    """Pull points in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILENAME

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    async def get(self, name: str) -> PullPoint | None:
        """See :class:`PullStore`."""
        return await asyncio.to_thread(self._get, name)

    def _get(self, name: str) -> PullPoint | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT p.version, s.doc FROM pulls p JOIN states s USING (digest) WHERE p.name = ?", (name,)
            ).fetchone()
        return None if row is None else PullPoint(int(row[0]), OverrideState.decode(row[1]))

    async def put(self, name: str, point: PullPoint, now: float) -> None:
        """See :class:`PullStore`."""
        await asyncio.to_thread(self._put, name, point, now)

    def _put(self, name: str, point: PullPoint, now: float) -> None:
        digest = point.overrides.digest
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("INSERT OR IGNORE INTO states VALUES (?, ?)", (digest, point.overrides.encode()))
                con.execute(
                    "INSERT OR REPLACE INTO pulls VALUES (?, ?, ?, ?)", (name, point.version, digest, now)
                )
                con.execute("DELETE FROM states WHERE digest NOT IN (SELECT digest FROM pulls)")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise


class RedisPulls:
    """Pull points in Redis, written to the primary (``client_for()``)."""

    def __init__(self, client_for: Callable[[], Redis]) -> None:
        self._client_for = client_for

    async def get(self, name: str) -> PullPoint | None:
        """See :class:`PullStore`."""
        client = self._client_for()
        raw = await client.hget(PULLS_KEY, name)
        if raw is None:
            return None
        point = json.loads(raw)
        doc = await client.get(state_key(point["digest"]))
        return None if doc is None else PullPoint(int(point["version"]), OverrideState.decode(doc))

    async def put(self, name: str, point: PullPoint, now: float) -> None:
        """See :class:`PullStore`. One transaction: the state and the pointer to it."""
        digest = point.overrides.digest
        async with self._client_for().pipeline(transaction=True) as pipe:
            pipe.set(state_key(digest), point.overrides.encode(), ex=STATE_TTL)
            pipe.hset(PULLS_KEY, name, json.dumps({"version": point.version, "digest": digest, "at": now}))
            await pipe.execute()
