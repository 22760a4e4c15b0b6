"""Helpers for updater tests: scripted HTTP feeds served through
``httpx.MockTransport`` (never the network), fast-retry settings and a
publish callback that records what it is given."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from blocklist.addresses import parse_address
from blocklist.settings import Settings
from blocklist.snapshot import Version
from blocklistupdater.fetcher import Fetcher
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Updater

Reply = Callable[[httpx.Request], httpx.Response]

IPSUM_URL = "https://feeds.test/ipsum.txt"
DROP_URL = "https://feeds.test/drop.txt"

#: A small ipsum-format feed: ten listed addresses, counts 1..10.
SMALL_IPSUM = "# IPsum Threat Intelligence Feed\n# IP\tnumber of (black)lists\n" + "".join(
    f"192.0.2.{n}\t{n}\n" for n in range(1, 11)
)
SMALL_IPSUM_BYTES = SMALL_IPSUM.encode()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a test's coroutine to completion in a fresh event loop."""
    return asyncio.run(coro)


def make_settings(tmp_path: Path, feeds: str = f"ipsum=ipsum:{IPSUM_URL}", **overrides: Any) -> Settings:
    """Settings with instant retries and the state dir in ``tmp_path``."""
    values: dict[str, Any] = {
        "feeds": feeds,
        "state_dir": tmp_path / "state",
        "retry_attempts": 3,
        "retry_initial_wait": 0,
        "retry_max_wait": 0,
        "retry_max_seconds": 30,
        "bootstrap": False,
        "max_download_bytes": 1024 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


def ipsum_text(count: int, *, prefix: str = "10") -> bytes:
    """An ipsum-format feed of ``count`` distinct addresses under ``prefix``."""
    lines = ["# ipsum test feed"]
    lines += [f"{prefix}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\t{i % 9 + 1}" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


class _Body(httpx.AsyncByteStream):
    """A body streamed in chunks, as from a socket.

    ``httpx.Response(content=bytes)`` is read eagerly, and the fetcher's
    ``aiter_raw()`` then raises ``StreamConsumed``: replies must stream.
    """

    def __init__(self, body: bytes, chunk: int = 64 * 1024) -> None:
        self._body = body
        self._chunk = chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), self._chunk):
            yield self._body[start : start + self._chunk]


def ok(body: bytes, status: int = 200, **headers: str) -> Reply:
    """A reply with ``body`` and ``headers`` (``Content_Length`` -> ``Content-Length``).

    Content-Length is the body's length unless given.
    """
    fixed = {"Content-Length": str(len(body))}
    fixed.update({name.replace("_", "-"): value for name, value in headers.items()})
    return lambda _request: httpx.Response(status, headers=fixed, stream=_Body(body))


def status(code: int, **headers: str) -> Reply:
    """An empty reply with HTTP status ``code``."""
    return ok(b"", code, **headers)


def raises(exc_type: type[httpx.TransportError]) -> Reply:
    """A reply that fails with ``exc_type`` as the transport would."""

    def reply(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated failure", request=request)

    return reply


def streamed(chunks: list[bytes], *, then_raise: type[Exception] | None = None) -> Reply:
    """A chunked reply with no Content-Length, optionally cut short by an error."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if then_raise is not None:
            raise then_raise("peer closed connection without sending complete message body")

    return lambda _request: httpx.Response(200, content=body())


def gzipped(data: bytes) -> bytes:
    """``data`` gzip-compressed (deterministic: no timestamp)."""
    return gzip.compress(data, mtime=0)


class FeedServer:
    """Scripted replies per URL; the last reply of a script repeats forever.

    Every request is recorded. An unscripted URL answers 404.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def script(self, url: str, *replies: Reply) -> None:
        """Answer ``url`` with ``replies`` in order, repeating the last one."""
        self.scripts[url] = list(replies)

    def count(self, url: str | None = None) -> int:
        """Requests received, for ``url`` or in total."""
        return sum(1 for r in self.requests if url is None or str(r.url) == url)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        replies = self.scripts.get(str(request.url))
        if not replies:
            return httpx.Response(404)
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request)

    def client(self) -> httpx.AsyncClient:
        """A client whose every request reaches :meth:`handle`; close it."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


def failing_client() -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client that refuses every connection, and the list of its requests."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), seen


class Published:
    """The publish callback: records every version it is handed.

    With ``store``, also saves each version there, as embedded mode does.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        self.versions: list[Version] = []
        self._store = store

    async def __call__(self, version: Version) -> None:
        if self._store is not None:
            self._store.save_version(version)
        self.versions.append(version)

    @property
    def numbers(self) -> list[int]:
        """Numbers of the published versions, in order."""
        return [v.number for v in self.versions]


def listed(version: Version, address: str) -> bool:
    """True if ``address`` is in ``version``'s index."""
    family, value = parse_address(address)
    return version.index.contains(family, value)


def feeds_of(version: Version, address: str) -> tuple[str, ...]:
    """Names of the feeds listing ``address`` in ``version`` (empty if none)."""
    family, value = parse_address(address)
    match = version.index.lookup(family, value)
    return match.feeds if match else ()


class Clock:
    """A settable clock for the updater (epoch seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@asynccontextmanager
async def open_updater(
    settings: Settings,
    client: httpx.AsyncClient,
    published: Published,
    *,
    store: StateStore | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Updater]:
    """An updater fetching through ``client``, closed on exit."""
    async with client:
        fetcher = Fetcher(settings, client)
        if clock is None:
            yield Updater(settings, fetcher, published, store=store)
        else:
            yield Updater(settings, fetcher, published, store=store, clock=clock)


def run_module(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m blocklistupdater ARGS`` in ``env``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "blocklistupdater", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
