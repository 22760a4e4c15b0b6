"""The distributed updater worker: syncs feeds and publishes to Redis.

``run_worker`` opens its clients (Redis, httpx), adopts the live version
from Redis so numbering continues, restores its local state, then either
syncs once (``once=True``) or runs the scheduler with a heartbeat until
``stop`` is set (SIGTERM in ``__main__``). Everything is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from blocklist import rediskeys as keys
from blocklist.errors import BlocklistError, SnapshotError
from blocklist.settings import Settings
from blocklist.snapshot import Version, decode_version
from blocklistupdater.fetcher import Fetcher
from blocklistupdater.redispublish import RedisPublisher
from blocklistupdater.scheduler import SyncScheduler
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Outcome, Updater

log = logging.getLogger(__name__)


def redis_client(url: str, timeout: float = 5.0) -> Redis:
    """An asyncio Redis client with bounded connect and command timeouts."""
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


async def load_live_version(client: Redis) -> Version | None:
    """The version Redis serves now, or None if there is none (or it is corrupt)."""
    data = await client.get(keys.SNAPSHOT)
    if not isinstance(data, bytes):
        return None
    try:
        return decode_version(data)
    except SnapshotError as exc:
        log.error("live snapshot in redis is unreadable", extra={"error": str(exc)})
        return None


async def check_heartbeat(settings: Settings) -> bool:
    """True if a worker's heartbeat key is present (it carries a TTL)."""
    assert settings.redis_url
    client = redis_client(settings.redis_url)
    try:
        return bool(await client.exists(keys.HEARTBEAT))
    except RedisError:
        return False
    finally:
        await client.aclose()


async def run_worker(
    settings: Settings,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Run the worker; returns the process exit code.

    With ``once``: 0 if every feed synced (updated or unchanged) and a version
    is live, 1 otherwise. Without: runs until ``stop`` is set, then 0.
    """
    assert settings.redis_url, "the worker needs REDIS_URL"
    client = redis_client(settings.redis_url)
    http = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.http_timeout, connect=min(10.0, settings.http_timeout)),
        follow_redirects=True,
        max_redirects=5,
    )
    publisher = RedisPublisher(client, keep_versions=settings.keep_versions)
    updater = Updater(
        settings, Fetcher(settings, http), publisher.publish, store=StateStore(settings.state_dir)
    )
    try:
        live = await load_live_version(client)
        if live is not None:
            updater.adopt(live)
        await updater.restore()
        if once:
            outcomes = await updater.sync_once()
            good = all(o in (Outcome.UPDATED, Outcome.NOT_MODIFIED) for o in outcomes.values())
            return 0 if good and updater.current is not None else 1
        scheduler = SyncScheduler(updater)
        scheduler.start()
        try:
            await _heartbeat_until(client, settings, stop or asyncio.Event())
        finally:
            scheduler.shutdown()
        return 0
    except (BlocklistError, RedisError) as exc:
        # E.g. Redis unreachable at start, or another updater's lock: exit
        # non-zero with one clear line; the supervisor restarts the worker.
        log.error("worker stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        await http.aclose()
        await client.aclose()


async def _heartbeat_until(client: Redis, settings: Settings, stop: asyncio.Event) -> None:
    ttl = settings.heartbeat_ttl
    while not stop.is_set():
        try:
            await client.set(keys.HEARTBEAT, json.dumps({"at": time.time()}), ex=max(1, round(ttl)))
        except RedisError as exc:
            log.warning("heartbeat not written", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ttl / 3)
    with contextlib.suppress(RedisError):
        await client.delete(keys.HEARTBEAT)
