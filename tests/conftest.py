"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redisserver import RedisServer, redis_server

_SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real feed files of ``/work/shared/data`` (read-only; see its README)."""
    path = _SHARED_DATA.resolve()
    if not path.is_dir():
        pytest.fail(f"shared feed data not found at {path}")
    return path


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A real redis-server primary and its replica, on free ports in ``tmp_path``."""
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica", replica_of=primary) as replica,
    ):
        yield primary, replica
