"""Distributed mode, local lookups: an API replica serving from memory what
the updater worker published to Redis.

At start the replica loads the live snapshot with one GET (a Redis replica
is enough: ``BLOCKLIST_REDIS_READ_URL``, else ``REDIS_URL``). It then waits
for announcements on the pub/sub channel, and polls the version number as a
fallback, loading each newer snapshot in the background and swapping it in
whole. When Redis is unreachable it keeps answering from the version it
holds, reports the degradation in ``/status`` and reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from blocklist import rediskeys as keys
from blocklist.settings import Settings
from blocklistupdater.worker import load_live_version, redis_client
from ipchecking.holder import VersionHolder

log = logging.getLogger(__name__)

#: Longest pause between reconnection attempts, seconds.
MAX_RECONNECT_DELAY = 5.0


class DistributedRuntime:
    """Keeps the served version in step with Redis for one API process."""

    mode = "distributed"

    def __init__(self, settings: Settings, holder: VersionHolder) -> None:
        self.settings = settings
        self.holder = holder
        self.started_at = time.time()
        self.read_url = settings.redis_read_url or settings.redis_url or ""
        self._client: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self.reachable = False
        self.last_error: str | None = None
        self.redis_version: int | None = None

    async def start(self) -> None:
        """Load the live version if Redis answers; follow it in the background."""
        self._client = redis_client(self.read_url, timeout=self.settings.redis_timeout)
        with contextlib.suppress(RedisError, OSError):
            await self._refresh()
        self._task = asyncio.create_task(self._follow(), name="redis-follower")

    async def stop(self) -> None:
        """Stop following and close the client."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client:
            await self._client.aclose()

    async def _refresh(self) -> None:
        """Load the live snapshot if its number is above the one served."""
        assert self._client is not None
        try:
            raw = await self._client.hget(keys.META, "number")
            self._mark_up()
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise
        self.redis_version = int(raw) if raw is not None else None
        held = self.holder.version
        if self.redis_version is None or (held is not None and held.number >= self.redis_version):
            return
        version = await load_live_version(self._client)
        if version is not None and (held is None or version.number > held.number):
            self.holder.swap(version)
            log.info("loaded version from redis", extra={"version": version.number})

    async def _follow(self) -> None:
        delay = 0.2
        while True:
            assert self._client is not None
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(keys.ANNOUNCE)
                await self._refresh()  # anything published while unsubscribed
                delay = 0.2
                while True:
                    # An announcement or a poll tick: either way, compare numbers.
                    await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self.settings.version_poll_interval
                    )
                    await self._refresh()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                # Pooled connections to a restarted server are dead; drop
                # them so the next attempt reconnects instead of failing once more.
                with contextlib.suppress(RedisError, OSError):
                    await self._client.connection_pool.disconnect()
            except Exception as exc:
                # A bug or bad data must not end following for good.
                log.exception("redis follower step failed")
                self._mark_down(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def _mark_up(self) -> None:
        if not self.reachable:
            log.info("redis reachable", extra={"url": _safe(self.read_url)})
        self.reachable = True
        self.last_error = None

    def _mark_down(self, exc: BaseException) -> None:
        if self.reachable or self.last_error is None:
            log.warning("redis unreachable; serving the held version", extra={"error": str(exc)})
        self.reachable = False
        self.last_error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict[str, Any]:
        """Redis reachability, the number Redis has, and the held feeds."""
        held = self.holder.version
        return {
            "lookup": "local",
            "redis": {
                "url": _safe(self.read_url),
                "reachable": self.reachable,
                "last_error": self.last_error,
                "version": self.redis_version,
            },
            "degraded": not self.reachable,
            "feeds": {
                f.name: {
                    "source": f.source,
                    "entries": f.entries,
                    "fetched_at": f.fetched_at,
                    "stale": f.bootstrap,
                    "validators": {"etag": f.etag, "last_modified": f.last_modified, "sha256": f.sha256},
                }
                for f in (held.feeds if held else ())
            },
        }


def _safe(url: str) -> str:
    """The URL without its password, for logs and /status."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
