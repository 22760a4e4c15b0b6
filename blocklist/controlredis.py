"""Operator control data of distributed mode, on the Redis primary.

Layout in :mod:`blocklist.rediskeys` (``control:*``). Every change is one
MULTI/EXEC or one script, so its data, its change-log entry (a stream that
API replicas read with ``XREAD BLOCK`` from their Redis replica) and its
audit entry are written together or not at all. Reports are applied by a
script that reads and writes each key's state atomically, with the same
integer arithmetic as :mod:`blocklist.reputation`; a state key expires
(``PXAT``) when the address has recovered fully or its retention ends, so
idle addresses cost nothing and need no sweep.

After each change, where the primary has replicas, ``WAIT`` holds the
answer until one of them has the change too (up to ``wait_timeout``), so
an acknowledged change survives the loss of the primary.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from blocklist import rediskeys as keys
from blocklist.control import (
    ApiKey,
    AuditEntry,
    ChangeEntry,
    Conflict,
    OverrideDraft,
    Page,
    ReportItem,
    Snapshot,
    decode_state,
    encode_state,
    override_audit,
)
from blocklist.overrides import Action, Override
from blocklist.reputation import NOTES_KEPT, Policy, State, block_end, drop_old_notes, expires_at

log = logging.getLogger(__name__)

#: The change log keeps about this many entries; a follower that falls further
#: behind (or reconnects) reloads a snapshot.
LOG_KEEP = 100_000
#: How long the replica count seen on the primary is trusted, seconds.
_REPLICAS_TTL = 1.0

REPORT_LUA = """
local now, points, interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local below, retention, maxlen, kept = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local out = {}
for i = 1, #KEYS - 3 do
  local a = 7 + (i - 1) * 5
  local penalty, limit, suppress = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local note, name, key = cjson.decode(ARGV[a + 4]), ARGV[a + 5], KEYS[3 + i]
  local s, u, d, r, notes = 100, now, 0, false, {}
  local raw = redis.call('GET', key)
  if raw then
    local st = cjson.decode(raw)
    s, u, d, r = st.s, st.u, st.d, st.r
    if type(st.n) == 'table' then notes = st.n end
  end
  local start = math.max(u, d)
  local cur = math.min(s, 100)
  if s < 100 and now > start then
    cur = math.min(100, s + math.floor((now - start) / interval) * points)
  end
  if cur > limit then cur = math.max(limit, cur - penalty) end
  if d <= now then d = 0 end
  if suppress > 0 then d = math.max(d, now + suppress) end
  if cur >= 100 then r = false end
  local fresh = {note}
  for j = 1, #notes do
    if #fresh >= kept then break end
    fresh[#fresh + 1] = notes[j]
  end
  if retention > 0 then
    local keep = {}
    for j = 1, #fresh do
      if fresh[j][1] >= now - retention then keep[#keep + 1] = fresh[j] end
    end
    fresh = keep
  end
  start = math.max(now, d)
  local function reach(target)
    if target - cur <= 0 then return start end
    return start + math.ceil((target - cur) / points) * interval
  end
  local expiry = reach(100)
  if retention > 0 then expiry = math.min(expiry, now + retention) end
  local untilv = false
  local doc = ''
  if expiry <= now then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[2], name)
  else
    if cur < below then untilv = math.min(reach(below), expiry) end
    doc = cjson.encode({s = cur, u = now, d = d, r = r, n = fresh})
    redis.call('SET', key, doc, 'PXAT', string.format('%d', expiry))
    if #fresh > 0 then
      redis.call('ZADD', KEYS[2], fresh[#fresh][1], name)
    else
      redis.call('ZREM', KEYS[2], name)
    end
  end
  local old = redis.call('ZSCORE', KEYS[1], name)
  old = old and tonumber(old) or false
  if old ~= untilv then
    local data = ''
    if untilv then
      data = string.format('%d', untilv)
      redis.call('ZADD', KEYS[1], untilv, name)
    else
      redis.call('ZREM', KEYS[1], name)
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'kind', 'blocked', 'key', name, 'data', data)
  end
  out[i] = doc
end
return out
"""
#: Drop notes older than ARGV[1] from the state KEYS[1] (name ARGV[2]); keeps its expiry.
TRIM_NOTES_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
local st = cjson.decode(raw)
local keep = {}
if type(st.n) == 'table' then
  for j = 1, #st.n do
    if st.n[j][1] >= tonumber(ARGV[1]) then keep[#keep + 1] = st.n[j] end
  end
end
st.n = keep
redis.call('SET', KEYS[1], cjson.encode(st), 'KEEPTTL')
if #keep > 0 then
  redis.call('ZADD', KEYS[2], keep[#keep][1], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""
#: Put (ARGV[3] = '1': only if absent) or delete (ARGV[2] = '') one API key, logging and auditing it.
KEY_LUA = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[2] == '' then
  if not exists then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  if exists then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'keys', 'key', ARGV[1], 'data', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'doc', ARGV[4])
return 1
"""


_STREAM_ID = re.compile(r"^[0-9]{1,19}(-[0-9]{1,19})?$", re.ASCII)
P = ParamSpec("P")
T = TypeVar("T")


def _reconnecting(
    method: Callable[Concatenate[RedisControl, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisControl, P], Coroutine[Any, Any, T]]:
    """Run the read ``method`` again, once, after a connection error on the primary.

    Pooled connections to a primary that restarted (or was replaced by a
    failover) fail on their first use; the pool is dropped and the read made
    once more. Writes are never retried (one whose reply was lost may have
    been made): they go through :func:`_fresh` instead.
    """

    async def wrapper(self: RedisControl, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except RedisConnectionError:
            with contextlib.suppress(RedisError, OSError):
                await self._primary().connection_pool.disconnect()
            return await method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper


def _fresh(
    method: Callable[Concatenate[RedisControl, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisControl, P], Coroutine[Any, Any, T]]:
    """Before the write ``method``, PING the primary; if that fails on a stale pooled
    connection, drop the pool, so the write itself runs on a fresh connection, once."""

    async def wrapper(self: RedisControl, /, *args: P.args, **kwargs: P.kwargs) -> T:
        client = self._primary()
        try:
            await client.ping()
        except RedisConnectionError:
            with contextlib.suppress(RedisError, OSError):
                await client.connection_pool.disconnect()
        return await method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper


def _stream_id(value: bytes | str) -> tuple[int, int]:
    """A stream id as a comparable pair (``ms-seq``; a bare ``ms`` is ``ms-0``)."""
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisControl:
    """Control data in Redis; see the module docstring.

    ``primary`` gives the client for writes and for the API's own reads
    (read-your-writes); ``reader`` the one the change follower reads (a
    replica is enough).
    """

    def __init__(
        self,
        primary: Callable[[], Redis],
        reader: Callable[[], Redis],
        policy: Policy,
        retention_ms: int,
        *,
        wait_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
        log_keep: int = LOG_KEEP,
    ) -> None:
        self._primary = primary
        self._reader = reader
        self.policy = policy
        self.retention_ms = retention_ms
        self.wait_timeout = wait_timeout
        self._clock = clock
        self._replicas: tuple[float, int] = (-1.0, 0)
        self.log_keep = log_keep

    def _log(self, pipe: Pipeline, change: ChangeEntry) -> None:
        fields = {"kind": change.kind, "key": change.key, "data": change.data or ""}
        pipe.xadd(keys.CONTROL_CHANGES, fields, maxlen=self.log_keep, approximate=True)  # type: ignore[arg-type]

    @staticmethod
    def _audit(pipe: Pipeline, entry: AuditEntry) -> None:
        pipe.xadd(keys.AUDIT, {"doc": entry.encode()})

    async def settle(self) -> None:
        """Wait until one replica has every write so far (where replicas exist, up to
        ``wait_timeout``); never raises: the writes are made, this only delays the answer."""
        if self.wait_timeout <= 0:
            return
        client = self._primary()
        try:
            seen_at, replicas = self._replicas
            if time.monotonic() - seen_at > _REPLICAS_TTL:
                info: dict[str, Any] = await client.info("replication")
                replicas = int(info.get("connected_slaves", 0))
                self._replicas = (time.monotonic(), replicas)
            if replicas and await client.wait(1, int(self.wait_timeout * 1000)) < 1:
                log.warning("no replica acknowledged a control change in time; it is on the primary only")
        except RedisError as exc:
            log.warning("could not wait for a replica", extra={"error": str(exc)})

    async def aclose(self) -> None:
        """Nothing to close: the clients belong to the connector."""

    # -- overrides ----------------------------------------------------------

    @_fresh
    async def add_override(self, draft: OverrideDraft, actor: str, now: float) -> Override:
        """See :class:`~blocklist.control.ControlStore`."""
        client = self._primary()
        item = Override(
            int(await client.incr(keys.OVERRIDE_IDS)),
            draft.network,
            draft.action,
            draft.reason,
            now,
            draft.expires_at,
            actor,
        )
        doc = item.encode()
        pipe = client.pipeline(transaction=True)
        pipe.hset(keys.OVERRIDES, str(item.id), doc)
        self._log(pipe, ChangeEntry("override", str(item.id), doc))
        self._audit(pipe, override_audit(item, actor, now, "override.create"))
        await pipe.execute()
        return item

    @_fresh
    async def delete_override(self, override_id: int, actor: str, now: float) -> Override | None:
        """See :class:`~blocklist.control.ControlStore`."""
        client = self._primary()
        doc = await client.hget(keys.OVERRIDES, str(override_id))
        if doc is None:
            return None
        item = Override.decode(doc)
        pipe = client.pipeline(transaction=True)
        pipe.hdel(keys.OVERRIDES, str(override_id))
        self._log(pipe, ChangeEntry("override", str(override_id), None))
        self._audit(pipe, override_audit(item, actor, now, "override.delete"))
        removed, *_ = await pipe.execute()
        return item if removed else None

    @_reconnecting
    async def get_override(self, override_id: int) -> Override | None:
        """See :class:`~blocklist.control.ControlStore`."""
        doc = await self._primary().hget(keys.OVERRIDES, str(override_id))
        return Override.decode(doc) if doc is not None else None

    @_reconnecting
    async def list_overrides(self, action: Action | None, offset: int, limit: int) -> Page:
        """See :class:`~blocklist.control.ControlStore` (reads every override: they are few)."""
        items = sorted(
            (Override.decode(d) for d in await self._primary().hvals(keys.OVERRIDES)), key=lambda o: o.id
        )
        if action:
            items = [o for o in items if o.action == action]
        return Page(len(items), items[offset : offset + limit])

    # -- reputation -----------------------------------------------------------

    @_fresh
    async def report(self, items: Sequence[ReportItem], now_ms: int) -> list[State]:
        """See :class:`~blocklist.control.ControlStore` (one script for the whole batch)."""
        if not items:
            return []
        policy = self.policy
        args: list[str | int] = [
            now_ms,
            policy.points,
            policy.interval_ms,
            policy.block_below,
            self.retention_ms,
            self.log_keep,
            NOTES_KEPT,
        ]
        for item in items:
            note = item.note
            doc = json.dumps([note.at, note.violation, note.comment, note.reporter])
            args += [item.penalty, item.decrease_limit, item.suppress_ms, doc, item.key]
        names = [keys.REPUTATION_BLOCKED, keys.REPUTATION_NOTES, keys.CONTROL_CHANGES]
        names += [keys.reputation_state_key(item.key) for item in items]
        client = self._primary()
        docs = await client.eval(REPORT_LUA, len(names), *names, *args)
        return [decode_state(d) if d else State(100, now_ms) for d in docs]

    @_reconnecting
    async def reputation(self, key: str) -> State | None:
        """See :class:`~blocklist.control.ControlStore`."""
        doc = await self._primary().get(keys.reputation_state_key(key))
        return decode_state(doc) if doc is not None else None

    @_fresh
    async def set_reputation(self, key: str, state: State | None, actor: str, now: float) -> None:
        """See :class:`~blocklist.control.ControlStore`."""
        now_ms = int(now * 1000)
        if state is not None and self.retention_ms > 0:
            state = drop_old_notes(state, now_ms - self.retention_ms)
        expiry = expires_at(state, self.policy, self.retention_ms) if state is not None else now_ms
        client = self._primary()
        pipe = client.pipeline(transaction=True)
        name = keys.reputation_state_key(key)
        until = None
        if state is None or expiry <= now_ms:
            pipe.delete(name)
            pipe.zrem(keys.REPUTATION_NOTES, key)
        else:
            pipe.set(name, encode_state(state), pxat=expiry)
            until = block_end(state, now_ms, self.policy, self.retention_ms)
            if state.notes:
                pipe.zadd(keys.REPUTATION_NOTES, {key: state.notes[-1].at})
        if until is None:
            pipe.zrem(keys.REPUTATION_BLOCKED, key)
        else:
            pipe.zadd(keys.REPUTATION_BLOCKED, {key: until})
        self._log(pipe, ChangeEntry("blocked", key, None if until is None else str(until)))
        detail = {"score": state.score, "reviewed": state.reviewed} if state else {}
        action = "reputation.set" if state else "reputation.delete"
        self._audit(pipe, AuditEntry("", now, actor, action, key, detail))
        await pipe.execute()

    # -- keys ---------------------------------------------------------------

    @_fresh
    async def _key_change(self, name: str, doc: str, audit: AuditEntry) -> bool:
        client = self._primary()
        names = (keys.API_KEYS, keys.CONTROL_CHANGES, keys.AUDIT)
        done = await client.eval(KEY_LUA, 3, *names, name, doc, self.log_keep, audit.encode())
        return bool(done)

    async def create_key(self, key: ApiKey, actor: str) -> None:
        """See :class:`~blocklist.control.ControlStore`."""
        audit = AuditEntry("", key.created_at, actor, "key.create", key.name, {"scope": key.scope})
        if not await self._key_change(key.name, key.encode(), audit):
            raise Conflict(f"a key named {key.name!r} exists")

    async def revoke_key(self, name: str, actor: str, now: float) -> bool:
        """See :class:`~blocklist.control.ControlStore`."""
        return await self._key_change(name, "", AuditEntry("", now, actor, "key.revoke", name))

    @_reconnecting
    async def list_keys(self) -> list[ApiKey]:
        """See :class:`~blocklist.control.ControlStore`."""
        docs = await self._primary().hvals(keys.API_KEYS)
        return sorted((ApiKey.decode(d) for d in docs), key=lambda k: k.name)

    # -- audit, snapshot, changes, purge -----------------------------------------

    @_reconnecting
    async def audit(self, before: str | None, limit: int) -> list[AuditEntry]:
        """See :class:`~blocklist.control.ControlStore`; ids are stream ids."""
        if before is not None and not _STREAM_ID.match(before):
            raise ValueError("before is not an audit entry id")
        top = f"({before}" if before else "+"
        try:
            rows: Any = await self._primary().xrevrange(keys.AUDIT, max=top, min="-", count=limit)
        except ResponseError:  # a well-formed id Redis still refuses (0-0, past the last one)
            raise ValueError("before is not an audit entry id") from None
        return [AuditEntry.decode(_text(entry_id), fields[b"doc"]) for entry_id, fields in rows]

    async def snapshot(self, now_ms: int) -> Snapshot:
        """See :class:`~blocklist.control.ControlStore` (one MULTI on the reader)."""
        pipe = self._reader().pipeline(transaction=True)
        pipe.xrevrange(keys.CONTROL_CHANGES, count=1)
        pipe.hvals(keys.OVERRIDES)
        pipe.zrangebyscore(keys.REPUTATION_BLOCKED, f"({now_ms}", "+inf", withscores=True)
        pipe.hvals(keys.API_KEYS)
        last, overrides, blocked, api_keys = await pipe.execute()
        cursor = _text(last[0][0]) if last else "0-0"
        return Snapshot(
            cursor,
            [Override.decode(d) for d in overrides],
            [(_text(k), int(u)) for k, u in blocked],
            [ApiKey.decode(d) for d in api_keys],
        )

    async def changes(self, cursor: str, wait: float) -> tuple[str, list[ChangeEntry]] | None:
        """See :class:`~blocklist.control.ControlStore` (``XREAD BLOCK`` on the reader).

        None when the stream was trimmed past ``cursor`` (its first entry is
        after it): entries this follower never read may be gone. A cursor of
        ``0-0`` (the log was empty at the snapshot) reads from the start.
        """
        pipe = self._reader().pipeline(transaction=False)
        pipe.xrange(keys.CONTROL_CHANGES, count=1)
        pipe.xread({keys.CONTROL_CHANGES: cursor}, count=1000, block=int(wait * 1000))
        first, reply = await pipe.execute()
        if first and cursor != "0-0" and _stream_id(first[0][0]) > _stream_id(cursor):
            return None
        if not reply:
            return cursor, []
        entries = reply[0][1]
        out = [
            ChangeEntry(
                _text(f[b"kind"]),  # type: ignore[arg-type]
                _text(f[b"key"]),
                _text(f[b"data"]) or None,
            )
            for _, f in entries
        ]
        return _text(entries[-1][0]), out

    @_fresh
    async def purge(self, now: float) -> int:
        """See :class:`~blocklist.control.ControlStore`."""
        client = self._primary()
        now_ms = int(now * 1000)
        done = 0
        expired = [
            o
            for o in (Override.decode(d) for d in await client.hvals(keys.OVERRIDES))
            if o.expires_at is not None and o.expires_at <= now
        ]
        if expired:
            pipe = client.pipeline(transaction=True)
            for item in expired:
                pipe.hdel(keys.OVERRIDES, str(item.id))
                self._log(pipe, ChangeEntry("override", str(item.id), None))
                self._audit(pipe, override_audit(item, "service", now, "override.expire"))
            await pipe.execute()
            done += len(expired)
        done += int(await client.zremrangebyscore(keys.REPUTATION_BLOCKED, "-inf", now_ms))
        if self.retention_ms > 0:
            horizon = now_ms - self.retention_ms
            stale: Any = await client.zrangebyscore(keys.REPUTATION_NOTES, "-inf", f"({horizon}")
            for name in stale:
                key = _text(name)
                state_key = keys.reputation_state_key(key)
                await client.eval(TRIM_NOTES_LUA, 2, state_key, keys.REPUTATION_NOTES, horizon, key)
                done += 1
            done += int(await client.xtrim(keys.AUDIT, minid=str(horizon), approximate=False))
        return done
