"""Concurrent live lookups coalesced into one Redis round trip.

Under load, many requests of one API process ask Redis at the same moment.
Sending each as its own transaction costs a round trip, a pooled connection
and redis-py's per-call overhead apiece. :class:`LookupBatcher` instead lets
the first lookup of an event-loop turn lead: it yields once, so the lookups
of every request read in that turn can join, then sends them all as one
``MULTI; ZRANGE ...; ZRANGE ...; HGET meta number; EXEC``. The transaction
keeps every answer of a batch and the version number from the same published
version, exactly as a single lookup would.

The leader sends from its own request's task: no extra task per batch, and
its caller's deadline bounds the exchange. Lookups of the same turn share
that deadline closely (they arrived together), so if the leader's caller
gives up mid-exchange, its followers get the same error at about the time
their own deadlines would have passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from blocklist import rediskeys as keys

log = logging.getLogger(__name__)

#: One lookup's answer: (the range members found, the live version number).
Reply = tuple[list[bytes], int | None]
_Pending = tuple[int, int, "asyncio.Future[Reply]"]


class LookupBatcher:
    """Batches ``ZRANGE ... BYLEX REV LIMIT 0 1`` lookups into transactions.

    ``client`` returns the Redis client to read from (called per batch, so a
    Sentinel failover is followed). A failed batch fails each of its lookups
    with the same exception (a ``RedisError`` or ``OSError``; anything
    unexpected is logged and becomes a ``ConnectionError``). Callers bound
    each lookup with their own deadline (``asyncio.timeout``).
    """

    def __init__(self, client: Callable[[], Redis], *, orphan_deadline: float) -> None:
        self._client = client
        self._orphan_deadline = orphan_deadline
        self._pending: list[_Pending] = []
        self._collecting = False
        self._orphans: set[asyncio.Task[None]] = set()

    async def lookup(self, family: int, value: int) -> Reply:
        """The members found for the address and the live version number."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append((family, value, future))
        if not self._collecting:
            try:
                await self._lead()
            except asyncio.CancelledError:
                # Nobody will await our own answer now: consume it.
                if future.done() and not future.cancelled():
                    future.exception()
                future.cancel()
                raise
        return await future

    async def _lead(self) -> None:
        self._collecting = True
        try:
            await asyncio.sleep(0)  # one turn: lookups read meanwhile join this batch
        except asyncio.CancelledError:
            # Our caller gave up before sending: the others still get sent.
            self._collecting = False
            self._send_orphans()
            raise
        self._collecting = False
        batch, self._pending = self._pending, []
        await self._send(batch)

    def _send_orphans(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []

        async def send() -> None:
            try:
                async with asyncio.timeout(self._orphan_deadline):
                    await self._send(batch)
            except TimeoutError as exc:
                _fail(batch, exc)

        task = asyncio.get_running_loop().create_task(send(), name="live-lookup-orphans")
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        batch = [item for item in batch if not item[2].done()]  # callers past their deadline
        if not batch:
            return
        try:
            pipe = self._client().pipeline(transaction=True)
            for family, value, _ in batch:
                pipe.zrange(
                    keys.ranges_key(family), keys.lookup_bound(family, value), "-",
                    desc=True, bylex=True, offset=0, num=1,
                )  # fmt: skip
            pipe.hget(keys.META, "number")
            replies = await pipe.execute()
        except asyncio.CancelledError:
            _fail(batch, ConnectionError("the lookup batch was abandoned"))
            raise
        except (RedisError, OSError) as exc:
            _fail(batch, exc)
            return
        except Exception:
            # A bug, not an outage: logged with its traceback; callers still
            # get a typed error (a 503), never a 500.
            log.exception("live lookup batch failed unexpectedly")
            _fail(batch, ConnectionError("unexpected error while asking redis"))
            return
        raw = replies[-1]
        number = int(raw) if raw is not None else None
        for (_, _, future), members in zip(batch, replies, strict=False):
            if not future.done():
                future.set_result((members, number))

    async def aclose(self) -> None:
        """Cancel orphan batches still in flight; their callers get an error."""
        for task in list(self._orphans):
            task.cancel()
        await asyncio.gather(*self._orphans, return_exceptions=True)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(exc)
