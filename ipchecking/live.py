"""Distributed mode, live lookups (``BLOCKLIST_LOOKUP=live``): every request
asks Redis.

A lookup is ``ZRANGE ranges:<family> [<addr>-~ - BYLEX REV LIMIT 0 1``
inside ``MULTI ... HGET meta number; EXEC``, so the range and the version
number come from the same published version (the publisher swaps versions
in one script). Lookups arriving together share one transaction and one
round trip (:mod:`ipchecking.livebatch`). Each lookup has a deadline
(``BLOCKLIST_LIVE_TIMEOUT``, 50 ms by default) over the whole exchange,
waiting for a pooled connection included: past it, or on any Redis error,
the request gets a 503 with a JSON reason, never a hung worker or a 500.

Nothing is held in memory but the connection pool; a background poll of the
version number keeps ``/status``, ``/readyz`` and ``/metrics`` current.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from blocklist import rediskeys as keys
from blocklist.errors import BackendUnavailable
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings
from ipchecking.background import stop_task
from ipchecking.holder import ALLOWED_BODY, BLOCKED_BODY, answer_headers, cache_control
from ipchecking.livebatch import LookupBatcher
from ipchecking.redislink import RedisLink
from ipchecking.statusviews import feed_summary, version_summary

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
#: Connections opened at start, so the first concurrent batches and the poll find them open.
WARM_CONNECTIONS = 5
#: Consequence logged when Redis fails a live lookup.
_ON_FAILURE = "live lookups answer 503 until it is back"


class LiveRuntime:
    """Answers lookups from Redis; reports Redis's state for one API process."""

    mode = "distributed"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.timeout = settings.live_timeout
        self.link = RedisLink(RedisConnector(settings, max_connections=settings.redis_max_connections))
        self._meta: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._headers: tuple[int, Headers, Headers] | None = None
        self._cache = cache_control(settings.cache_max_age)
        self._batcher = LookupBatcher(self.link.connector.reader, orphan_deadline=self.timeout)
        self._timeout_reason = f"redis did not answer within {self.timeout * 1000:g} ms; retry shortly"

    async def start(self) -> None:
        """Open the first pooled connections, then poll the live version's metadata.

        Connections are opened here, not by the first requests, so no lookup
        pays the connection set-up against its deadline. Best effort, bounded
        by ``BLOCKLIST_REDIS_TIMEOUT``: with Redis down, start-up goes on and
        lookups answer 503 until it is back.
        """
        await self._warm_pool(min(WARM_CONNECTIONS, self.settings.redis_max_connections))
        self._task = asyncio.create_task(self._poll(), name="redis-meta-poll")

    async def _warm_pool(self, count: int) -> None:
        pool = self.link.connector.reader().connection_pool
        opened = []
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                for _ in range(count):
                    opened.append(await pool.get_connection())  # type: ignore[no-untyped-call]
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not open redis connections at start", extra={"error": str(exc)})
        finally:
            for connection in opened:
                await pool.release(connection)

    async def stop(self) -> None:
        """Stop polling and close the connection pool."""
        await stop_task(self._task)
        await self._batcher.aclose()
        await self.link.connector.aclose()

    def ready_version(self) -> int | None:
        """Number of the version Redis serves, if Redis answered the last poll."""
        return self.link.redis_version if self.link.reachable else None

    async def lookup(self, family: int, value: int) -> tuple[bool, int | None]:
        """``(blocked, version number)``; the number is None when Redis holds no version.

        Raises :class:`BackendUnavailable` (with a reason fit for clients) on a
        Redis error or when the deadline passes.
        """
        try:
            async with asyncio.timeout(self.timeout):
                members, held = await self._batcher.lookup(family, value)
        except TimeoutError as exc:
            self.link.mark_down(exc, _ON_FAILURE)
            raise BackendUnavailable(self._timeout_reason) from None
        except (RedisError, OSError) as exc:
            self.link.mark_down(exc, _ON_FAILURE)
            raise BackendUnavailable("redis is unavailable; retry shortly") from None
        if not self.link.reachable:
            self.link.mark_up()
        self.link.redis_version = held
        return bool(members) and keys.member_contains(members[0], value), held

    def headers_for(self, number: int) -> tuple[Headers, Headers]:
        """Precomputed (blocked, allowed) headers for answers from version ``number``."""
        cached = self._headers
        if cached is None or cached[0] != number:
            tag = str(number).encode()
            blocked, allowed = (answer_headers(b, tag, self._cache) for b in (BLOCKED_BODY, ALLOWED_BODY))
            cached = self._headers = (number, blocked, allowed)
        return cached[1], cached[2]

    async def _poll(self) -> None:
        while True:
            client = self.link.connector.reader()
            try:
                meta = await client.hgetall(keys.META)
                self.link.mark_up()
                self._meta = {_text(k): _text(v) for k, v in meta.items()} if meta else None
                self.link.redis_version = int(self._meta["number"]) if self._meta else None
            except (RedisError, OSError) as exc:
                self.link.mark_down(exc, _ON_FAILURE)
                with contextlib.suppress(RedisError, OSError):
                    await client.connection_pool.disconnect()
            except (KeyError, ValueError) as exc:
                log.error("live version metadata in redis is unreadable", extra={"error": str(exc)})
                self._meta = None
            await asyncio.sleep(self.settings.version_poll_interval)

    def status(self) -> dict[str, Any]:
        """Lookup kind, Redis's state and the live version's metadata, as last polled."""
        meta = self._meta if self.link.reachable else None
        body: dict[str, Any] = {
            "lookup": "live",
            "redis": self.link.status(),
            "degraded": not self.link.reachable,
            "feeds": {},
        }
        if meta is None:
            return body
        try:
            body["version"] = version_summary(
                int(meta["number"]),
                float(meta["built_at"]),
                checksum=meta.get("checksum"),
                ranges=(int(meta.get("ranges_v4", 0)), int(meta.get("ranges_v6", 0))),
                bootstrap=meta.get("bootstrap") == "1",
            )
            body["feeds"] = {f["name"]: feed_summary(f) for f in json.loads(meta.get("feeds", "[]"))}
        except (KeyError, ValueError, TypeError) as exc:
            log.error("live version metadata in redis is unreadable", extra={"error": str(exc)})
        return body


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
