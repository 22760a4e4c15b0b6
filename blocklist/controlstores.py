"""The control store of a mode, built from settings (API, updater worker and CLI alike)."""

from __future__ import annotations

import time
from collections.abc import Callable

from blocklist.control import ControlStore
from blocklist.controlredis import RedisControl
from blocklist.controlsqlite import SqliteControl
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings


def control_store(
    settings: Settings, connector: RedisConnector | None, *, clock: Callable[[], float] = time.time
) -> ControlStore:
    """SQLite in the state directory (embedded mode), else Redis through ``connector``."""
    policy, retention = settings.reputation_policy, settings.personal_retention_ms
    if settings.embedded or connector is None:
        return SqliteControl(settings.state_dir, policy, retention, clock=clock)
    return RedisControl(
        connector.primary,
        connector.reader,
        policy,
        retention,
        wait_timeout=settings.control_wait_timeout,
        clock=clock,
    )
