"""The Redis connector: which server each role points at, without connecting."""

from __future__ import annotations

import asyncio

import pytest

from blocklist.errors import ConfigError
from blocklist.redisclient import RedisConnector, safe_url
from blocklist.settings import Settings


def test_embedded_settings_have_no_redis_to_connect_to() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisConnector(Settings(redis_url=None))


def test_reads_go_to_the_read_url_and_writes_to_the_primary() -> None:
    settings = Settings(redis_url="redis://:pw@primary:6380/0", redis_read_url="redis://replica:6381/0")
    connector = RedisConnector(settings)
    assert connector.describe("primary") == "redis://***@primary:6380/0"
    assert connector.describe("reader") == "redis://replica:6381/0"
    primary, reader = connector.primary(), connector.reader()
    assert primary.connection_pool.connection_kwargs["port"] == 6380
    assert reader.connection_pool.connection_kwargs["port"] == 6381
    assert connector.primary() is primary  # made once, shared
    asyncio.run(connector.aclose())


def test_reads_fall_back_to_the_primary_and_the_reader_pool_is_bounded() -> None:
    connector = RedisConnector(Settings(redis_url="redis://primary:6380/0"), max_connections=7, timeout=0.25)
    reader = connector.reader()
    assert reader.connection_pool.connection_kwargs["port"] == 6380
    assert reader.connection_pool.max_connections == 7
    assert reader.connection_pool.connection_kwargs["socket_timeout"] == 0.25
    asyncio.run(connector.aclose())


def test_sentinel_settings_name_the_service_not_a_server() -> None:
    settings = Settings(redis_sentinels="s1:26379,s2:26379", redis_sentinel_service="blocklist")
    connector = RedisConnector(settings)
    assert connector.via_sentinel
    assert connector.describe("primary") == "sentinel://s1:26379,s2:26379/blocklist (primary)"
    assert connector.describe("reader") == "sentinel://s1:26379,s2:26379/blocklist (replica)"
    assert connector.reader().connection_pool.service_name == "blocklist"
    asyncio.run(connector.aclose())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user:secret@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://:p@ss@host:6380", "rediss://***@host:6380"),
    ],
)
def test_safe_url_hides_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown
