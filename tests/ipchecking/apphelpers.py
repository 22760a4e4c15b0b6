"""Helpers for API tests: build the app on a local feed file and run its
lifespan, then talk to it through httpx's in-process ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from blocklist.settings import Settings
from ipchecking.fastpath import FastPathApp

SMALL_FEED = """# a tiny plain list
1.2.3.4
10.20.0.0/16
2001:db8::/32
198.51.100.7
"""


def settings_for(tmp_path: Path, feed_text: str | None = SMALL_FEED, **overrides: object) -> Settings:
    """Settings reading one plain feed file from ``tmp_path`` (never the network)."""
    feed = tmp_path / "feed.txt"
    if feed_text is not None:
        feed.write_text(feed_text)
    values: dict[str, object] = {
        "feeds": f"local=plain:{feed}",
        "state_dir": tmp_path / "state",
        "bootstrap": False,
        "retry_attempts": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running(app: FastPathApp, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client bound to it."""
    async with app.app.router.lifespan_context(app.app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if wait_ready:
                await wait_until_ready(client)
            yield client


async def wait_until_ready(client: httpx.AsyncClient, limit: float = 10.0) -> None:
    """Poll ``/readyz`` until it answers 200 (raise after ``limit`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (await client.get("/readyz")).status_code != 200:
        if loop.time() > deadline:
            raise AssertionError("service never became ready")
        await asyncio.sleep(0.02)
