"""The distributed updater worker: syncs feeds and publishes to Redis.

``run_worker`` opens its clients (Redis, httpx), adopts the live version
from Redis so numbering continues, restores its local state, then either
syncs once (``once=True``) or runs the scheduler with a heartbeat until
``stop`` is set (SIGTERM in ``__main__``). A long-running worker waits for
Redis at start (capped backoff); ``--once`` fails at once without it. With
``BLOCKLIST_METRICS_PORT`` it serves Prometheus ``/metrics`` (sync
outcomes, published version) on that port. Everything is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time

import httpx
from prometheus_client import start_http_server
from redis.asyncio import Redis
from redis.exceptions import RedisError

from blocklist import rediskeys as keys
from blocklist.controlstores import control_store
from blocklist.errors import BlocklistError
from blocklist.redisclient import RedisConnector, load_live_version
from blocklist.settings import Settings
from blocklist.snapshot import Version
from blocklistupdater.fetcher import Fetcher
from blocklistupdater.redishistory import purge_redis
from blocklistupdater.redispublish import RedisPublisher
from blocklistupdater.scheduler import SyncScheduler
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Outcome, Updater

log = logging.getLogger(__name__)


async def check_heartbeat(settings: Settings) -> bool:
    """True if this worker's heartbeat key (``BLOCKLIST_WORKER_ID``) is present.

    The key carries a TTL, so a worker that stopped beating fails the probe
    within ``BLOCKLIST_HEARTBEAT_TTL`` seconds.
    """
    redis = RedisConnector(settings, timeout=min(settings.redis_timeout, 5.0))
    try:
        return bool(await redis.primary().exists(keys.heartbeat_key(settings.worker_id)))
    except (RedisError, OSError):
        return False
    finally:
        await redis.aclose()


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
    redis = RedisConnector(settings)
    client = redis.primary()
    http = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.http_timeout, connect=min(10.0, settings.http_timeout)),
        follow_redirects=True,
        max_redirects=5,
    )
    publisher = RedisPublisher(
        client,
        keep_versions=settings.keep_versions,
        temp_ttl=max(1, round(settings.temp_key_ttl)),
        lock_timeout=settings.publish_lock_ttl,
        lock_wait=settings.publish_lock_wait,
    )
    updater = Updater(
        settings, Fetcher(settings, http), publisher.publish, store=StateStore(settings.state_dir)
    )
    metrics_server = None
    try:
        if settings.metrics_port is not None:
            metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
        stop = stop or asyncio.Event()
        if once:
            live = await load_live_version(client)
        else:
            reached, live = await _wait_for_redis(client, stop)
            if not reached:
                return 0
        if live is not None:
            updater.adopt(live)
        await updater.restore()
        if once:
            outcomes = await updater.sync_once()
            good = all(o in (Outcome.UPDATED, Outcome.NOT_MODIFIED) for o in outcomes.values())
            return 0 if good and updater.current is not None else 1
        control = control_store(settings, redis)

        async def purge() -> None:
            await purge_redis(client, settings, time.time())
            await control.purge(time.time())

        scheduler = SyncScheduler(updater, purge=purge)
        scheduler.start()
        try:
            await _heartbeat_until(client, settings, stop)
        finally:
            scheduler.shutdown()
        return 0
    except (BlocklistError, RedisError, OSError) as exc:
        # E.g. Redis unreachable with --once, the metrics port taken: exit
        # non-zero with one clear line; the supervisor restarts the worker.
        log.error("worker stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        await http.aclose()
        await redis.aclose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


#: Longest wait between attempts to reach Redis at start, seconds.
MAX_START_WAIT = 30.0


async def _wait_for_redis(client: Redis, stop: asyncio.Event) -> tuple[bool, Version | None]:
    """``(True, live version or None)`` once Redis answers, retried with capped backoff.

    A long-running worker started beside Redis (a compose or Kubernetes
    roll-out) waits for it instead of exiting into a crash loop. Returns
    ``(False, None)`` if ``stop`` is set first.
    """
    delay = 0.5
    while True:
        try:
            return True, await load_live_version(client)
        except (RedisError, OSError) as exc:
            log.warning(
                "redis not reachable at start; waiting",
                extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return False, None
        delay = min(delay * 2, MAX_START_WAIT)


async def _heartbeat_until(client: Redis, settings: Settings, stop: asyncio.Event) -> None:
    ttl = settings.heartbeat_ttl
    key = keys.heartbeat_key(settings.worker_id)
    while not stop.is_set():
        try:
            beat = json.dumps({"at": time.time(), "pid": os.getpid()})
            await client.set(key, beat, ex=max(1, round(ttl)))
        except RedisError as exc:
            log.warning("heartbeat not written", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ttl / 3)
    with contextlib.suppress(RedisError):
        await client.delete(key)
