"""Fetching feed sources: HTTP(S) with conditional GET, size cap, timeouts and
bounded retries; ``file://`` URLs and plain paths read from disk.

The HTTP client is handed in (tests give it an ``httpx.MockTransport``).
Retries (tenacity) cover exactly: connect/read/write/pool timeouts, network
errors and responses cut short, HTTP 5xx and 429; they stop after
``retry_attempts`` or when ``retry_max_seconds`` is spent, attempts included. A 429 or 503 with
``Retry-After`` waits that long (capped by ``retry_max_wait``). Any other 4xx
and any parse problem fail at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from blocklist.errors import FetchError
from blocklist.settings import FeedSpec, Settings


@dataclass(frozen=True, slots=True)
class Validators:
    """What identifies a downloaded body, for conditional GET and reports."""

    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A fetched body, or ``body is None`` when the source is unchanged."""

    body: bytes | None
    validators: Validators

    @property
    def not_modified(self) -> bool:
        """True when the source answered 304 or served identical bytes."""
        return self.body is None


class RetryableFetchError(FetchError):
    """A transient failure worth another attempt (timeouts, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Fetcher:
    """Downloads feed sources. One instance per process; not tied to a feed."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        # Exponential backoff plus up to 1 s of jitter, capped in _wait. Not
        # wait_exponential_jitter: newer tenacity deprecates its ``initial``
        # (DeprecationWarning) and 9.0 lacks the replacement ``multiplier``.
        self._backoff = wait_exponential(multiplier=settings.retry_initial_wait, max=settings.retry_max_wait)
        self._jitter = wait_random(0, 1.0)

    async def fetch(self, spec: FeedSpec, previous: Validators | None) -> FetchResult:
        """Fetch ``spec.source``; unchanged content yields ``body=None``.

        Raises :class:`FetchError` once retries are exhausted or on a
        non-retryable failure.
        """
        if spec.is_http:
            result = await self._fetch_http_with_retries(spec.source, previous)
        else:
            result = await asyncio.to_thread(self._read_file, spec.source)
        if previous and result.body is not None and result.validators.sha256 == previous.sha256:
            return FetchResult(None, result.validators)
        return result

    async def _fetch_http_with_retries(self, url: str, previous: Validators | None) -> FetchResult:
        settings = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.retry_max_seconds
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableFetchError),
            # stop_before_delay: never start a wait that would end past the budget.
            stop=stop_after_attempt(settings.retry_attempts) | stop_before_delay(settings.retry_max_seconds),
            wait=self._wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                # Each attempt also ends by the budget, so the whole sync is bounded.
                limit = min(settings.download_timeout, max(0.0, deadline - loop.time()))
                return await self._fetch_http(url, previous, limit)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableFetchError) and exc.retry_after is not None:
            return min(exc.retry_after, self._settings.retry_max_wait)
        return min(self._backoff(state) + self._jitter(state), self._settings.retry_max_wait)

    async def _fetch_http(self, url: str, previous: Validators | None, limit: float) -> FetchResult:
        headers = {"User-Agent": self._settings.user_agent, "Accept-Encoding": "gzip"}
        if previous and previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous and previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
        cap = self._settings.max_download_bytes
        try:
            async with (
                asyncio.timeout(limit),
                self._client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code == 304:
                    if previous is None:
                        raise FetchError("HTTP 304 to a request that was not conditional")
                    return FetchResult(None, previous)
                _raise_for_status(response)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise FetchError(f"feed is {declared} bytes, over the cap of {cap}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > cap:
                        raise FetchError(f"feed exceeds the size cap of {cap} bytes")
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise RetryableFetchError(f"timeout: {type(exc).__name__}") from None
        except TimeoutError:
            # A server dripping bytes defeats per-read timeouts; this bounds the whole download.
            raise RetryableFetchError(f"download took longer than {limit:g} s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise RetryableFetchError(f"network error: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"HTTP error: {type(exc).__name__}: {exc}") from None
        # Raw bytes: a Content-Encoding: gzip body stays compressed here and is
        # inflated by the parser under the same size cap (no gzip bomb).
        body = b"".join(chunks)
        return FetchResult(
            body,
            Validators(
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                sha256=hashlib.sha256(body).hexdigest(),
            ),
        )

    def _read_file(self, source: str) -> FetchResult:
        path = source_path(source)
        cap = self._settings.max_download_bytes
        try:
            with path.open("rb") as handle:
                body = handle.read(cap + 1)
                mtime = os.fstat(handle.fileno()).st_mtime
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(body) > cap:
            raise FetchError(f"feed file exceeds the size cap of {cap} bytes")
        return FetchResult(
            body,
            Validators(
                last_modified=email.utils.formatdate(mtime, usegmt=True),
                sha256=hashlib.sha256(body).hexdigest(),
            ),
        )


def source_path(source: str) -> Path:
    """The local path of a ``file://`` URL or plain path source."""
    if source.startswith("file:"):
        return Path(unquote(urlsplit(source).path))
    return Path(source)


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetryableFetchError(f"HTTP {status}", _retry_after(response))
    if status >= 400:
        raise FetchError(f"HTTP {status}")
    if status != 200:
        raise FetchError(f"unexpected HTTP {status}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
