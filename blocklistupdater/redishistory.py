"""Writing the address history to Redis (distributed mode).

A :class:`~blocklist.history.Change` is staged under temporary keys (with a
TTL, like a version's) and applied by a Lua script that first checks every
temporary key exists, then copies each into place and deletes it (renames
it, when its target does not exist yet: a feed's first, large record costs
O(1) inside the script, which blocks Redis while it runs): Redis runs the
script atomically, so readers see history before or after the
change, whole. A live publish applies its change in the same script as the
version's swap (:mod:`blocklistupdater.redispublish`); imports and purges
take the publish lock and apply theirs alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from blocklist import rediskeys as keys
from blocklist.history import Catalog, Change, Interval, Member, touched_keys
from blocklist.historyredis import RedisHistoryReader, bound_member
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings
from blocklist.snapshot import Version
from blocklistupdater.historyrecorder import (
    ImportFile,
    ImportResult,
    build_import,
    build_purge,
    build_version,
    horizons,
)
from blocklistupdater.resp import pack_batches, pack_with_ttl, send_packed

#: Lua: apply staged history operations. KEYS from ``first``: (temp, target)
#: pairs; ARGV from ``arg``: one operation name per pair. Returns an error
#: text if a temporary key is missing (nothing applied), else false.
APPLY_LUA = """
local unpack = unpack or table.unpack
local function check_history(first, count)
  for i = 0, count - 1 do
    if redis.call('EXISTS', KEYS[first + 2 * i]) == 0 then
      return 'temporary key missing: ' .. KEYS[first + 2 * i]
    end
  end
  return false
end
local function apply_history(first, arg, count)
  for i = 0, count - 1 do
    local temp, target, op = KEYS[first + 2 * i], KEYS[first + 2 * i + 1], ARGV[arg + i]
    if (op == 'hset' or op == 'zadd') and redis.call('EXISTS', target) == 0 then
      -- A feed's first record (the bulk of it): O(1), not a copy.
      redis.call('RENAME', temp, target)
      redis.call('PERSIST', target)
    elseif op == 'hset' then
      local flat = redis.call('HGETALL', temp)
      for j = 1, #flat, 1000 do
        redis.call('HSET', target, unpack(flat, j, math.min(j + 999, #flat)))
      end
    elseif op == 'zadd' then
      local flat = redis.call('ZRANGE', temp, 0, -1, 'WITHSCORES')
      for j = 1, #flat, 1000 do
        local args = {}
        for k = j, math.min(j + 999, #flat), 2 do
          args[#args + 1] = flat[k + 1]
          args[#args + 1] = flat[k]
        end
        redis.call('ZADD', target, unpack(args))
      end
    else
      local members = redis.call('SMEMBERS', temp)
      local command = (op == 'hdel') and 'HDEL' or 'ZREM'
      for j = 1, #members, 1000 do
        redis.call(command, target, unpack(members, j, math.min(j + 999, #members)))
      end
    end
    redis.call('UNLINK', temp)
  end
  redis.call('HINCRBY', KEYS[first + 2 * count], 'generation', 1)
end
"""

_APPLY_ALONE = (
    APPLY_LUA
    + """
local count = tonumber(ARGV[1])
local missing = check_history(1, count)
if missing then return redis.error_reply(missing) end
apply_history(1, 2, count)
return count
"""
)


class Prefetched:
    """A :class:`~blocklistupdater.historyrecorder.HistoryReader` over data read beforehand."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        opens: dict[str, dict[bytes, Member]] | None = None,
        records: dict[str, dict[bytes, list[Interval]]] | None = None,
        changed: dict[str, list[bytes]] | None = None,
    ) -> None:
        self._catalog = catalog
        self._opens = opens or {}
        self._records = records or {}
        self._changed = changed or {}

    def catalog(self) -> Catalog:
        """The catalog read."""
        return Catalog(list(self._catalog.versions), self._catalog.horizon)

    def opens(self, feed: str) -> dict[bytes, Member]:
        """Open members read for ``feed``."""
        return self._opens.get(feed, {})

    def records(self, feed: str, wanted: Sequence[bytes]) -> dict[bytes, list[Interval]]:
        """Records read for ``feed`` (a superset of ``wanted``)."""
        held = self._records.get(feed, {})
        return {key: held[key] for key in wanted if key in held}

    def feed_records(self, feed: str) -> dict[bytes, list[Interval]]:
        """Every record read for ``feed``."""
        return dict(self._records.get(feed, {}))

    def changed_keys(self, feed: str, after: float, upto: float) -> list[bytes]:
        """Keys read as changed for ``feed`` (the range asked when prefetching)."""
        return self._changed.get(feed, [])


@dataclass(frozen=True, slots=True)
class Staged:
    """A change packed for temporary keys: the commands writing them, and the script's part."""

    commands: list[bytes]
    script_keys: list[str]
    ops: list[str]


def pack_change(token: str, change: Change, ttl: int) -> Staged:
    """``change`` as packed commands writing temporary keys (CPU only: run it in a thread).

    Packing everything before anything is sent keeps the temporary keys'
    life (from write to swap) to the time of sending them.
    """
    script_keys: list[str] = []
    ops: list[str] = []
    commands: list[bytes] = []
    expire = str(ttl).encode()

    def put(target: str, op: str, command: bytes, args: list[bytes], per_item: int) -> None:
        if not args:
            return
        name = keys.temp_key(token, f"timeline:{len(ops)}")
        script_keys.extend((name, target))
        ops.append(op)
        # One item with the TTL in one atomic step, then the bulk: a writer
        # killed mid-write leaves no temporary key without a TTL behind.
        commands.append(pack_with_ttl(command, name.encode(), args[:per_item], expire))
        commands.extend(pack_batches(command, name.encode(), args[per_item:], per_item))

    for feed in sorted({f for f, _ in change.records} | {f for f, _ in change.opens}):
        for kind, values in (("records", change.records), ("opens", change.opens)):
            target = keys.timeline_key(kind, feed)
            sets: list[bytes] = []
            gone: list[bytes] = []
            for (f, key), value in values.items():
                if f != feed:
                    continue
                if value is None:
                    gone.append(key)
                else:
                    sets += (key, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            put(target, "hset", b"HSET", sets, 2)
            put(target, "hdel", b"SADD", gone, 1)
    for feed in sorted({f for f, _, _ in change.bounds_add | change.bounds_del}):
        target = keys.timeline_key("bounds", feed)
        add: list[bytes] = []
        for f, t, key in change.bounds_add:
            if f == feed:
                add += (repr(t).encode(), bound_member(t, key))
        drop = [bound_member(t, k) for f, t, k in change.bounds_del if f == feed]
        put(target, "zadd", b"ZADD", add, 2)
        put(target, "zrem", b"SADD", drop, 1)
    docs = [(str(n).encode(), v.encode()) for n, v in change.versions.items() if v is not None]
    put(keys.TIMELINE_VERSIONS, "hset", b"HSET", [x for pair in docs for x in pair], 2)
    gone_versions = [str(n).encode() for n, v in change.versions.items() if v is None]
    put(keys.TIMELINE_VERSIONS, "hdel", b"SADD", gone_versions, 1)
    meta: list[bytes] = []
    if docs:
        meta += (b"max_number", str(max(int(n) for n, _ in docs)).encode())
    if change.horizon is not None:
        meta += (b"horizon", repr(change.horizon).encode())
    put(keys.TIMELINE_META, "hset", b"HSET", meta, 2)
    return Staged(commands, script_keys, ops)


async def apply_alone(client: Redis, change: Change, token: str, ttl: int) -> None:
    """Stage and apply ``change`` on its own (imports, purges); the caller holds the publish lock."""
    staged = await asyncio.to_thread(pack_change, token, change, ttl)
    await send_packed(client, staged.commands)
    script_keys, ops = staged.script_keys, staged.ops
    if ops:
        script_keys.append(keys.TIMELINE_META)
        await client.eval(_APPLY_ALONE, len(script_keys), *script_keys, len(ops), *ops)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A version renumbered above what Redis holds, and its history change packed.

    ``state`` is what it was built against (live number, highest history
    number, history generation): still the same under the publish lock, the
    work stands; otherwise it is done again there.
    """

    version: Version
    staged: Staged
    state: tuple[object, ...]


async def publish_state(client: Redis) -> tuple[object, ...]:
    """What a prepared publish depends on: live number, history's numbers and generation."""
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.META, "number")
    pipe.hmget(keys.TIMELINE_META, ["max_number", "generation"])
    live, (top, generation) = await pipe.execute()
    return live, top, generation


async def prepare_publish(client: Redis, version: Version, token: str, ttl: int) -> Prepared:
    """Number ``version`` above what Redis holds and build and pack its history change.

    Reads only: it runs before the publish lock is taken (the change is
    O(entries) to build for a feed's first record), and again under it if
    :func:`publish_state` moved meanwhile.
    """
    state = await publish_state(client)
    above = max(_number(state[0]), _number(state[1]))
    if above >= version.number:
        version = dataclasses.replace(version, number=above + 1)
    contents = version.history
    version = dataclasses.replace(version, history=None)
    if contents is None:
        return Prepared(version, Staged([], [], []), state)
    reader = RedisHistoryReader(client)
    catalog = await reader.catalog()
    feeds = sorted(set(contents) | set(catalog.feeds()))
    opens = {feed: await reader.opens(feed) for feed in feeds}
    records = {}
    for feed in feeds:
        members = contents[feed].members if feed in contents else {}
        records[feed] = await reader.records(feed, touched_keys(members, opens[feed]))
    prefetched = Prefetched(catalog, opens=opens, records=records)

    def build() -> Staged:
        _, change = build_version(prefetched, version, contents)
        return pack_change(token, change, ttl)

    # CPU-bound: off the event loop.
    return Prepared(dataclasses.replace(version, history=contents), await asyncio.to_thread(build), state)


def _number(raw: object) -> int:
    """A version number read from Redis, or -1 when absent."""
    return int(raw) if isinstance(raw, bytes | str) else -1


async def import_redis(settings: Settings, feed: str, files: list[ImportFile]) -> list[ImportResult]:
    """Record ``files`` in Redis history, under the publish lock, in one atomic apply."""
    connector = RedisConnector(settings)
    try:
        client = connector.primary()
        lock = client.lock(keys.PUBLISH_LOCK, timeout=settings.publish_lock_ttl)
        if not await lock.acquire(blocking_timeout=settings.publish_lock_wait):
            raise TimeoutError("another updater holds the publish lock; nothing imported")
        try:
            reader = RedisHistoryReader(client)
            catalog = await reader.catalog()
            live = await client.hget(keys.META, "number")
            first = max(int(live) if live is not None else 0, catalog.max_number) + 1
            prefetched = Prefetched(catalog, records={feed: await reader.feed_records(feed)})
            change, results = build_import(
                prefetched, settings, feed, files, first_number=first, recorded_at=time.time()
            )
            await apply_alone(
                client, change, f"import-{time.time_ns()}", max(60, round(settings.temp_key_ttl))
            )
        finally:
            await lock.release()
    finally:
        await connector.aclose()
    return results


def _ttl(settings: Settings) -> int:
    return max(60, round(settings.temp_key_ttl))


async def purge_redis(client: Redis, settings: Settings, now: float) -> int:
    """Purge Redis history (see :func:`~.historyrecorder.build_purge`) under the publish lock."""
    lock = client.lock(keys.PUBLISH_LOCK, timeout=settings.publish_lock_ttl)
    if not await lock.acquire(blocking_timeout=settings.publish_lock_wait):
        return 0
    try:
        reader = RedisHistoryReader(client)
        catalog = await reader.catalog()
        per_feed, _ = horizons(settings, catalog, now)
        changed = {feed: await reader.changed_keys(feed, -math.inf, h) for feed, h in per_feed.items()}
        records = {feed: await reader.records(feed, changed[feed]) for feed in per_feed}
        change = build_purge(Prefetched(catalog, records=records, changed=changed), settings, now)
        await apply_alone(client, change, f"purge-{time.time_ns()}", _ttl(settings))
    finally:
        await lock.release()
    return len(change)
