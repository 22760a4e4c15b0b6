"""Where the Redis servers are, and the clients both processes use.

The one module of the core that touches Redis, and only when called:
building a :class:`RedisConnector` opens nothing; connections open on the
first command. Direct URLs (``REDIS_URL`` for the primary,
``BLOCKLIST_REDIS_READ_URL`` for reads) or Redis Sentinel
(``BLOCKLIST_REDIS_SENTINELS``: the primary and its replicas are found by
asking the sentinels, and found again after a failover).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel

from blocklist import rediskeys as keys
from blocklist.errors import ConfigError, SnapshotError
from blocklist.settings import Settings
from blocklist.snapshot import Version, decode_version

log = logging.getLogger(__name__)


class RedisConnector:
    """Builds, and later closes, the clients of one process.

    ``primary()`` is for writes (the updater); ``reader()`` for reads (API
    replicas: a Redis replica when one is configured or discovered, else the
    primary). Clients are made once and shared; ``aclose()`` closes them all.
    ``max_connections`` bounds the reader's pool; when all its connections
    are busy, a command waits for one up to its socket timeout.
    """

    def __init__(
        self, settings: Settings, *, timeout: float | None = None, max_connections: int | None = None
    ) -> None:
        if settings.embedded:
            raise ConfigError("no Redis configured: set REDIS_URL or BLOCKLIST_REDIS_SENTINELS")
        self._settings = settings
        self._timeout = timeout if timeout is not None else settings.redis_timeout
        self._max_connections = max_connections
        self._sentinel: Sentinel | None = None
        self._clients: dict[str, Redis] = {}

    @property
    def via_sentinel(self) -> bool:
        """True when the servers are found through Redis Sentinel."""
        return bool(self._settings.redis_sentinels)

    def describe(self, role: str = "reader") -> str:
        """Where ``role`` (``primary`` or ``reader``) points, without passwords."""
        s = self._settings
        if s.redis_read_url and role == "reader":
            return safe_url(s.redis_read_url)
        if self.via_sentinel:
            hosts = ",".join(f"{h}:{p}" for h, p in s.redis_sentinels)
            kind = "replica" if role == "reader" else "primary"
            return f"sentinel://{hosts}/{s.redis_sentinel_service} ({kind})"
        return safe_url(s.redis_url or "")

    def primary(self) -> Redis:
        """Client of the primary (writes, locks, publishing)."""
        return self._client("primary")

    def reader(self) -> Redis:
        """Client for reads: the configured read URL, a replica, or the primary."""
        return self._client("reader")

    async def aclose(self) -> None:
        """Close every client made, and the sentinel connections."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._sentinel is not None:
            await self._sentinel.aclose()
            self._sentinel = None

    def _client(self, role: str) -> Redis:
        client = self._clients.get(role)
        if client is None:
            client = self._clients[role] = self._make(role)
        return client

    def _make(self, role: str) -> Redis:
        s = self._settings
        timeout = self._timeout
        pool_size = self._max_connections if role == "reader" else None
        if role == "reader" and s.redis_read_url:
            return _from_url(s.redis_read_url, pool_size, timeout)
        if not self.via_sentinel:
            assert s.redis_url
            return _from_url(s.redis_url, pool_size, timeout)
        find = self._sentinel_client().slave_for if role == "reader" else self._sentinel_client().master_for
        client: Redis = find(
            s.redis_sentinel_service,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=pool_size,
        )
        return client

    def _sentinel_client(self) -> Sentinel:
        if self._sentinel is None:
            s = self._settings
            sentinel_kwargs: dict[str, object] = {
                "socket_timeout": self._timeout,
                "socket_connect_timeout": self._timeout,
            }
            if s.redis_sentinel_password is not None:
                sentinel_kwargs["password"] = s.redis_sentinel_password.get_secret_value()
            password = s.redis_password.get_secret_value() if s.redis_password else None
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed in newer redis-py
                list(s.redis_sentinels), sentinel_kwargs=sentinel_kwargs, password=password
            )
        return self._sentinel


def _from_url(url: str, pool_size: int | None, timeout: float) -> Redis:
    if pool_size is None:
        return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    # Blocking: a burst beyond the pool waits briefly for a free connection
    # instead of failing at once with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return Redis.from_pool(pool)


#: A snapshot is read in pieces of this size (``GETRANGE`` in one transaction),
#: so no single copy of a large version holds the event loop for long.
READ_PIECE = 4 * 1024 * 1024


async def read_snapshot(client: Redis) -> bytes | bytearray | None:
    """The live snapshot's bytes, or None if there is none.

    Small snapshots are one ``GET``. A large one is read as ``GETRANGE``
    pieces inside one ``MULTI``/``EXEC`` (so all pieces are of the same
    version, even if a publish swaps it meanwhile) and assembled piece by
    piece, yielding to the event loop between copies.
    """
    size = await client.strlen(keys.SNAPSHOT)
    if not size:
        return None
    if size <= READ_PIECE:
        data = await client.get(keys.SNAPSHOT)
        return data if isinstance(data, bytes) else None
    for _ in range(3):
        async with client.pipeline(transaction=True) as pipe:
            pipe.strlen(keys.SNAPSHOT)
            for start in range(0, size, READ_PIECE):
                pipe.getrange(keys.SNAPSHOT, start, start + READ_PIECE - 1)
            size, *pieces = await pipe.execute()
        if sum(len(piece) for piece in pieces) == size:
            break
        # A larger version was swapped in between STRLEN and the read: again.
    else:
        return None
    buffer = bytearray()
    pieces.reverse()
    while pieces:
        # Appended (a large buffer grows in place) and each piece freed once copied.
        buffer += pieces.pop()
        await asyncio.sleep(0)
    return buffer or None


async def load_live_version(client: Redis) -> Version | None:
    """The version Redis serves now, or None if there is none (or it is corrupt)."""
    data = await read_snapshot(client)
    if data is None:
        return None
    try:
        # Off the event loop: a large snapshot takes a while to check and decode.
        return await asyncio.to_thread(decode_version, data)
    except SnapshotError as exc:
        log.error("live snapshot in redis is unreadable", extra={"error": str(exc)})
        return None


def safe_url(url: str) -> str:
    """The URL without its password, for logs and /status."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
