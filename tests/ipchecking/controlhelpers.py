"""Helpers for operator-control tests: a settable clock and keys made in the store."""

from __future__ import annotations

import asyncio
import time

from blocklist.control import ApiKey, Scope, new_key
from blocklist.controlstores import control_store
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings
from ipchecking.auth import key_digest


class Clock:
    """A clock the test moves by hand; starts at the real time, whole seconds."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_key(settings: Settings, name: str, scope: Scope) -> str:
    """Store a key of ``scope`` as the CLI does; the key in clear."""

    async def create() -> str:
        connector = None if settings.embedded else RedisConnector(settings)
        store = control_store(settings, connector)
        secret = new_key()
        try:
            await store.create_key(ApiKey(name, scope, key_digest(secret), time.time(), "test"), "test")
        finally:
            await store.aclose()
            if connector is not None:
                await connector.aclose()
        return secret

    return asyncio.run(create())


def bearer(key: str) -> dict[str, str]:
    """The Authorization header presenting ``key``."""
    return {"Authorization": f"Bearer {key}"}
