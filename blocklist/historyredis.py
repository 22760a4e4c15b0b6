"""Reading the address history held in Redis (distributed mode).

The updater writes it (see :mod:`blocklistupdater.redishistory`); API
replicas read it from a Redis replica with this reader. Layout, per feed:
``timeline:records:<feed>`` (hash: network key -> intervals),
``timeline:opens:<feed>`` (hash: key -> ``[label, score]``) and
``timeline:bounds:<feed>`` (sorted set: key + 8-byte moment, scored by the
moment); plus the catalog ``timeline:versions`` and ``timeline:meta``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence

from redis.asyncio import Redis

from blocklist import rediskeys as keys
from blocklist.history import Catalog, Interval, Member, VersionRecord, decode_intervals

_MOMENT = struct.Struct(">d")


def bound_member(moment: float, key: bytes) -> bytes:
    """The sorted-set member of one bound (unique per key and moment)."""
    return key + _MOMENT.pack(moment)


def _raw(value: object) -> bytes:
    """A reply item as bytes (clients here never decode replies)."""
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value


def _score(value: float) -> str:
    return "-inf" if value == -math.inf else repr(value)


class RedisHistoryReader:
    """Async reads of the history in one Redis (a replica for API answers)."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def catalog(self) -> Catalog:
        """Every version and the horizon (two reads, one round trip)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hvals(keys.TIMELINE_VERSIONS)
        pipe.hget(keys.TIMELINE_META, "horizon")
        docs, horizon = await pipe.execute()
        return Catalog([VersionRecord.decode(d) for d in docs], float(horizon) if horizon else None)

    async def open_keys(self, feed: str) -> list[bytes]:
        """The keys of :meth:`opens` only (no values decoded)."""
        return [_raw(key) for key in await self._client.hkeys(keys.timeline_key("opens", feed))]

    async def opens(self, feed: str) -> dict[bytes, Member]:
        """What history holds as listed now by ``feed``."""
        raw = await self._client.hgetall(keys.timeline_key("opens", feed))
        out: dict[bytes, Member] = {}
        for key, value in raw.items():
            label, score = json.loads(value)
            out[_raw(key)] = (str(label), int(score))
        return out

    async def records(self, feed: str, wanted: Sequence[bytes]) -> dict[bytes, list[Interval]]:
        """The records of ``feed`` at ``wanted`` keys (absent ones left out)."""
        if not wanted:
            return {}
        values = await self._client.hmget(keys.timeline_key("records", feed), list(wanted))
        return {key: decode_intervals(v) for key, v in zip(wanted, values, strict=True) if v is not None}

    async def feed_records(self, feed: str) -> dict[bytes, list[Interval]]:
        """Every record of ``feed``."""
        raw = await self._client.hgetall(keys.timeline_key("records", feed))
        return {_raw(key): decode_intervals(value) for key, value in raw.items()}

    async def changed_keys(self, feed: str, after: float, upto: float) -> list[bytes]:
        """Keys of ``feed`` whose record changes in ``(after, upto]``."""
        members = await self._client.zrangebyscore(
            keys.timeline_key("bounds", feed), f"({_score(after)}", _score(upto)
        )
        return sorted({_raw(m)[: -_MOMENT.size] for m in members})

    async def lookup(
        self, feeds: Sequence[str], wanted: Sequence[bytes]
    ) -> dict[str, dict[bytes, list[Interval]]]:
        """Per feed, the records at ``wanted`` (an address's keys): one HMGET per feed, one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for feed in feeds:
            pipe.hmget(keys.timeline_key("records", feed), list(wanted))
        out: dict[str, dict[bytes, list[Interval]]] = {}
        for feed, values in zip(feeds, await pipe.execute(), strict=True):
            found = {key: decode_intervals(v) for key, v in zip(wanted, values, strict=True) if v is not None}
            if found:
                out[feed] = found
        return out
