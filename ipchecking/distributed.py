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
from dataclasses import asdict
from typing import Any

from redis.exceptions import RedisError

from blocklist import rediskeys as keys
from blocklist.redisclient import RedisConnector, load_live_version
from blocklist.settings import Settings
from ipchecking.background import stop_task
from ipchecking.holder import VersionHolder
from ipchecking.redislink import RedisLink
from ipchecking.statusviews import feed_summary

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
        self.link = RedisLink(RedisConnector(settings))
        self._task: asyncio.Task[None] | None = None

    def ready_version(self) -> int | None:
        """Number of the version answers come from (the held one), if any."""
        version = self.holder.version
        return version.number if version else None

    async def start(self) -> None:
        """Load the live version if Redis answers; follow it in the background."""
        with contextlib.suppress(RedisError, OSError):
            await self._refresh()
        self._task = asyncio.create_task(self._follow(), name="redis-follower")

    async def stop(self) -> None:
        """Stop following and close the clients."""
        await stop_task(self._task)
        await self.link.connector.aclose()

    async def _refresh(self) -> None:
        """Load the live snapshot if its number is above the one served."""
        client = self.link.connector.reader()
        try:
            raw = await client.hget(keys.META, "number")
            self.link.mark_up()
        except (RedisError, OSError) as exc:
            self.link.mark_down(exc, "serving the held version")
            raise
        self.link.redis_version = int(raw) if raw is not None else None
        held = self.holder.version
        redis_version = self.link.redis_version
        if redis_version is None or (held is not None and held.number >= redis_version):
            return
        version = await load_live_version(client)
        if version is not None and (held is None or version.number > held.number):
            await self.holder.swap_prepared(version)
            log.info("loaded version from redis", extra={"version": version.number})

    async def _follow(self) -> None:
        delay = 0.2
        while True:
            client = self.link.connector.reader()
            pubsub = client.pubsub()
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
                self.link.mark_down(exc, "serving the held version")
                # Pooled connections to a restarted server are dead; drop
                # them so the next attempt reconnects instead of failing once more.
                with contextlib.suppress(RedisError, OSError):
                    await client.connection_pool.disconnect()
            except Exception as exc:
                # A bug or bad data must not end following for good.
                log.exception("redis follower step failed")
                self.link.mark_down(exc, "serving the held version")
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed in newer redis-py
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def status(self) -> dict[str, Any]:
        """Redis reachability, the number Redis has, and the held feeds."""
        held = self.holder.version
        return {
            "lookup": "local",
            "redis": self.link.status(),
            "degraded": not self.link.reachable,
            "feeds": {f.name: feed_summary(asdict(f)) for f in (held.feeds if held else ())},
        }
