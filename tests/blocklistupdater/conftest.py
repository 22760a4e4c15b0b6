"""Fixtures of the updater's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redisserver import RedisServer, redis_server


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A real redis-server primary and its replica, on free ports in ``tmp_path``."""
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica", replica_of=primary) as replica,
    ):
        yield primary, replica
