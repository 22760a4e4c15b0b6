"""Where the API reads history from: the state directory's SQLite file or Redis.

Both sources answer the same three questions; the routes in
:mod:`ipchecking.historyroutes` need nothing else. Embedded reads run in a
worker thread (SQLite is blocking); distributed reads go to a Redis replica
and keep the catalog until its generation changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis

from blocklist import rediskeys as keys
from blocklist.history import Catalog, Interval, diff_keys
from blocklist.historyredis import RedisHistoryReader
from blocklist.historysqlite import SqliteHistory

Lookups = dict[str, dict[bytes, list[Interval]]]


class HistorySource(Protocol):
    """Read access to history for the API."""

    async def catalog(self) -> Catalog:
        """Every version and the horizon."""
        ...

    async def lookup(self, wanted: Sequence[bytes]) -> Lookups:
        """Per feed, the records at ``wanted`` (an address's keys)."""
        ...

    async def diff(self, feed: str, first: float, second: float) -> tuple[list[bytes], list[bytes]]:
        """Keys of ``feed`` listed at ``second`` and not ``first``, and the reverse."""
        ...

    async def opens(self, feed: str) -> list[bytes]:
        """Keys of the networks ``feed`` lists in the latest version history holds."""
        ...


class SqliteSource:
    """History from the state directory (embedded mode)."""

    def __init__(self, store: SqliteHistory) -> None:
        self._store = store

    async def catalog(self) -> Catalog:
        """Every version and the horizon."""
        return await asyncio.to_thread(self._catalog)

    def _catalog(self) -> Catalog:
        with self._store.reading() as reader:
            return reader.catalog()

    async def lookup(self, wanted: Sequence[bytes]) -> Lookups:
        """Per feed, the records at ``wanted``: one indexed query."""
        return await asyncio.to_thread(self._lookup, wanted)

    def _lookup(self, wanted: Sequence[bytes]) -> Lookups:
        with self._store.reading() as reader:
            return reader.lookup(wanted)

    async def diff(self, feed: str, first: float, second: float) -> tuple[list[bytes], list[bytes]]:
        """Added and removed keys of ``feed`` between two moments."""
        return await asyncio.to_thread(self._diff, feed, first, second)

    def _diff(self, feed: str, first: float, second: float) -> tuple[list[bytes], list[bytes]]:
        low, high = sorted((first, second))
        with self._store.reading() as reader:
            records = reader.records(feed, reader.changed_keys(feed, low, high))
        return diff_keys(records, first, second)

    async def opens(self, feed: str) -> list[bytes]:
        """Keys of the networks ``feed`` lists in the latest version."""
        return await asyncio.to_thread(self._opens, feed)

    def _opens(self, feed: str) -> list[bytes]:
        with self._store.reading() as reader:
            return list(reader.opens(feed))


class RedisSource:
    """History from Redis (distributed mode), read through ``client_for()`` (a replica)."""

    def __init__(self, client_for: Callable[[], Redis]) -> None:
        self._client_for = client_for
        self._cached: tuple[object, Catalog] | None = None

    async def catalog(self) -> Catalog:
        """The catalog, re-read only when its generation changed."""
        client = self._client_for()
        generation: object = await client.hget(keys.TIMELINE_META, "generation")
        cached = self._cached
        if cached is None or cached[0] != generation:
            cached = self._cached = (generation, await RedisHistoryReader(client).catalog())
        return cached[1]

    async def lookup(self, wanted: Sequence[bytes]) -> Lookups:
        """Per feed, the records at ``wanted``: one pipelined round trip after the catalog."""
        feeds = (await self.catalog()).feeds()
        return await RedisHistoryReader(self._client_for()).lookup(feeds, wanted)

    async def diff(self, feed: str, first: float, second: float) -> tuple[list[bytes], list[bytes]]:
        """Added and removed keys of ``feed`` between two moments."""
        reader = RedisHistoryReader(self._client_for())
        low, high = sorted((first, second))
        records = await reader.records(feed, await reader.changed_keys(feed, low, high))
        return diff_keys(records, first, second)

    async def opens(self, feed: str) -> list[bytes]:
        """Keys of the networks ``feed`` lists in the latest version."""
        return await RedisHistoryReader(self._client_for()).open_keys(feed)
