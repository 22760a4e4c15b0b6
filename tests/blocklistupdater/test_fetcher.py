"""Fetcher: HTTP through a mock transport (statuses, retries, size cap,
conditional GET) and local files."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from blocklist.errors import FetchError
from blocklist.settings import FeedSpec, Settings
from blocklistupdater.fetcher import Fetcher, FetchResult, Validators, source_path
from tests.blocklistupdater.support import (
    IPSUM_URL,
    SMALL_IPSUM_BYTES,
    FeedServer,
    gzipped,
    make_settings,
    ok,
    raises,
    run,
    status,
    streamed,
)

SPEC = FeedSpec("ipsum", IPSUM_URL)
BODY = SMALL_IPSUM_BYTES
BODY_SHA = hashlib.sha256(BODY).hexdigest()


async def _fetch(
    server: FeedServer, settings: Settings, spec: FeedSpec = SPEC, previous: Validators | None = None
) -> FetchResult:
    async with server.client() as client:
        return await Fetcher(settings, client).fetch(spec, previous)


def fetch(
    server: FeedServer, settings: Settings, spec: FeedSpec = SPEC, previous: Validators | None = None
) -> FetchResult:
    return run(_fetch(server, settings, spec, previous))


@pytest.fixture
def server() -> FeedServer:
    return FeedServer()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# --- success and validators ---------------------------------------------------


def test_200_returns_body_and_validators(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, ok(BODY, ETag='"v1"', Last_Modified="Sat, 22 Aug 2026 01:00:29 GMT"))
    result = fetch(server, settings)
    assert result.body == BODY
    assert not result.not_modified
    assert result.validators == Validators('"v1"', "Sat, 22 Aug 2026 01:00:29 GMT", BODY_SHA)
    assert server.count() == 1


def test_200_without_validator_headers_still_has_sha256(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, ok(BODY))
    result = fetch(server, settings)
    assert result.validators == Validators(None, None, BODY_SHA)


def test_first_request_is_unconditional_and_asks_for_gzip(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, ok(BODY))
    fetch(server, settings)
    headers = server.requests[0].headers
    assert "If-None-Match" not in headers
    assert "If-Modified-Since" not in headers
    assert headers["Accept-Encoding"] == "gzip"
    assert headers["User-Agent"] == settings.user_agent


def test_conditional_get_sends_previous_validators(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(304))
    previous = Validators('"v1"', "Sat, 22 Aug 2026 01:00:29 GMT", BODY_SHA)
    fetch(server, settings, previous=previous)
    headers = server.requests[0].headers
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Sat, 22 Aug 2026 01:00:29 GMT"


def test_conditional_get_sends_only_the_validators_it_has(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(304))
    fetch(server, settings, previous=Validators(None, "Sat, 22 Aug 2026 01:00:29 GMT", BODY_SHA))
    headers = server.requests[0].headers
    assert "If-None-Match" not in headers
    assert headers["If-Modified-Since"] == "Sat, 22 Aug 2026 01:00:29 GMT"


def test_304_is_not_modified_and_keeps_previous_validators(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(304))
    previous = Validators('"v1"', None, BODY_SHA)
    result = fetch(server, settings, previous=previous)
    assert result.not_modified
    assert result.body is None
    assert result.validators == previous
    assert server.count() == 1


def test_200_with_identical_bytes_is_not_modified(server: FeedServer, settings: Settings) -> None:
    """A server ignoring conditional GET but serving the same bytes changes nothing."""
    server.script(IPSUM_URL, ok(BODY, ETag='"v2"'))
    result = fetch(server, settings, previous=Validators('"v1"', None, BODY_SHA))
    assert result.not_modified
    assert result.validators.sha256 == BODY_SHA


def test_200_with_changed_bytes_returns_the_new_body(server: FeedServer, settings: Settings) -> None:
    new = BODY + b"192.0.2.99\t1\n"
    server.script(IPSUM_URL, ok(new, ETag='"v2"'))
    result = fetch(server, settings, previous=Validators('"v1"', None, BODY_SHA))
    assert result.body == new
    assert result.validators.etag == '"v2"'
    assert result.validators.sha256 == hashlib.sha256(new).hexdigest()


def test_gzip_content_encoding_is_kept_compressed(server: FeedServer, settings: Settings) -> None:
    """The parser inflates under the size cap, so the fetcher must hand over raw bytes."""
    packed = gzipped(BODY)
    server.script(IPSUM_URL, ok(packed, Content_Encoding="gzip"))
    result = fetch(server, settings)
    assert result.body == packed
    assert result.validators.sha256 == hashlib.sha256(packed).hexdigest()


# --- failures that must not be retried ----------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 451])
def test_4xx_fails_without_retry(server: FeedServer, settings: Settings, code: int) -> None:
    server.script(IPSUM_URL, status(code), ok(BODY))
    with pytest.raises(FetchError, match=f"HTTP {code}"):
        fetch(server, settings)
    assert server.count() == 1


def test_404_fails_without_retry(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(404))
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server, settings)
    assert server.count() == 1


@pytest.mark.parametrize("code", [204, 206, 301, 302])
def test_unexpected_status_fails_without_retry(server: FeedServer, settings: Settings, code: int) -> None:
    server.script(IPSUM_URL, status(code, Location="https://feeds.test/elsewhere"))
    with pytest.raises(FetchError, match=f"unexpected HTTP {code}"):
        fetch(server, settings)
    assert server.count() == 1


# --- transient failures: retried ----------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_5xx_then_200_succeeds_after_a_retry(server: FeedServer, settings: Settings, code: int) -> None:
    server.script(IPSUM_URL, status(code), ok(BODY))
    result = fetch(server, settings)
    assert result.body == BODY
    assert server.count() == 2


def test_500_forever_fails_after_all_attempts(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retry_attempts=4)
    server.script(IPSUM_URL, status(500))
    with pytest.raises(FetchError, match="HTTP 500"):
        fetch(server, settings)
    assert server.count() == 4


def test_429_with_retry_after_zero_is_retried(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(429, Retry_After="0"), ok(BODY))
    assert fetch(server, settings).body == BODY
    assert server.count() == 2


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_429_forever_gives_up_after_retry_attempts(server: FeedServer, tmp_path: Path, attempts: int) -> None:
    settings = make_settings(tmp_path, retry_attempts=attempts)
    server.script(IPSUM_URL, status(429, Retry_After="0"))
    with pytest.raises(FetchError, match="HTTP 429"):
        fetch(server, settings)
    assert server.count() == attempts


@pytest.mark.parametrize(
    "retry_after",
    ["0", email.utils.formatdate(time.time() - 3600, usegmt=True)],
    ids=["seconds", "http-date-in-the-past"],
)
def test_retry_after_replaces_the_exponential_backoff(
    server: FeedServer, tmp_path: Path, retry_after: str
) -> None:
    """With a 5 s backoff configured, an honoured ``Retry-After: 0`` retries at once."""
    settings = make_settings(tmp_path, retry_initial_wait=5, retry_max_wait=5)
    server.script(IPSUM_URL, status(503, Retry_After=retry_after), ok(BODY))
    started = time.monotonic()
    assert fetch(server, settings).body == BODY
    assert time.monotonic() - started < 2.5
    assert server.count() == 2


def test_retry_after_is_capped_by_retry_max_wait(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, status(429, Retry_After="3600"), ok(BODY))
    started = time.monotonic()
    assert fetch(server, settings).body == BODY
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
def test_timeouts_are_retried_then_fail(server: FeedServer, settings: Settings, exc: type) -> None:
    server.script(IPSUM_URL, raises(exc))
    with pytest.raises(FetchError, match=f"timeout: {exc.__name__}"):
        fetch(server, settings)
    assert server.count() == settings.retry_attempts


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectTimeout])
def test_timeout_then_success_returns_the_body(server: FeedServer, settings: Settings, exc: type) -> None:
    server.script(IPSUM_URL, raises(exc), ok(BODY))
    assert fetch(server, settings).body == BODY
    assert server.count() == 2


def test_connection_refused_is_retried(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, raises(httpx.ConnectError), raises(httpx.ConnectError), ok(BODY))
    assert fetch(server, settings).body == BODY
    assert server.count() == 3


def test_connection_refused_forever_fails(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, raises(httpx.ConnectError))
    with pytest.raises(FetchError, match="ConnectError"):
        fetch(server, settings)
    assert server.count() == settings.retry_attempts


def test_truncated_response_is_retried(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, raises(httpx.RemoteProtocolError), ok(BODY))
    assert fetch(server, settings).body == BODY
    assert server.count() == 2


def test_body_cut_short_mid_stream_is_retried(server: FeedServer, settings: Settings) -> None:
    """A partial body must never be returned as if complete."""
    server.script(
        IPSUM_URL, streamed([BODY[:40], BODY[40:80]], then_raise=httpx.RemoteProtocolError), ok(BODY)
    )
    assert fetch(server, settings).body == BODY
    assert server.count() == 2


def test_body_always_cut_short_fails(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, streamed([BODY[:40]], then_raise=httpx.RemoteProtocolError))
    with pytest.raises(FetchError, match="RemoteProtocolError"):
        fetch(server, settings)
    assert server.count() == settings.retry_attempts


def test_read_error_mid_stream_is_retried(server: FeedServer, settings: Settings) -> None:
    server.script(IPSUM_URL, streamed([BODY[:40]], then_raise=httpx.ReadError), ok(BODY))
    assert fetch(server, settings).body == BODY
    assert server.count() == 2


# --- size cap -------------------------------------------------------------------


def test_declared_content_length_over_cap_fails_without_retry(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_download_bytes=100)
    server.script(IPSUM_URL, ok(b"1.2.3.4\n", Content_Length="101"))
    with pytest.raises(FetchError, match="over the cap of 100"):
        fetch(server, settings)
    assert server.count() == 1


def test_streamed_body_over_cap_fails_without_retry(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_download_bytes=100)
    server.script(IPSUM_URL, streamed([b"1.2.3.4\n" * 10] * 3))
    with pytest.raises(FetchError, match="exceeds the size cap of 100"):
        fetch(server, settings)
    assert server.count() == 1
    assert "Content-Length" not in server.requests[0].headers


def test_body_exactly_at_cap_is_accepted(server: FeedServer, tmp_path: Path) -> None:
    body = b"1.2.3.4\n" * 10
    settings = make_settings(tmp_path, max_download_bytes=len(body))
    server.script(IPSUM_URL, streamed([body[:30], body[30:]]))
    assert fetch(server, settings).body == body


def test_compressed_body_is_capped_on_the_wire(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_download_bytes=64)
    packed = gzipped(bytes(range(256)) * 4)
    assert len(packed) > 64
    server.script(IPSUM_URL, ok(packed, Content_Encoding="gzip"))
    with pytest.raises(FetchError, match="cap"):
        fetch(server, settings)


# --- local files ----------------------------------------------------------------


def test_file_url_is_read_from_disk(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    feed = tmp_path / "my feed.txt"
    feed.write_bytes(BODY)
    result = fetch(server, settings, FeedSpec("local", feed.as_uri()))
    assert result.body == BODY
    assert result.validators.sha256 == BODY_SHA
    assert result.validators.etag is None
    assert result.validators.last_modified == email.utils.formatdate(feed.stat().st_mtime, usegmt=True)
    assert server.count() == 0


def test_plain_path_is_read_from_disk(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_bytes(BODY)
    assert fetch(server, settings, FeedSpec("local", str(feed))).body == BODY
    assert server.count() == 0


def test_unchanged_file_is_not_modified(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_bytes(BODY)
    result = fetch(server, settings, FeedSpec("local", str(feed)), Validators(sha256=BODY_SHA))
    assert result.not_modified


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-url", "plain-path"])
def test_missing_file_fails(server: FeedServer, settings: Settings, tmp_path: Path, as_uri: bool) -> None:
    missing = tmp_path / "absent.txt"
    source = missing.as_uri() if as_uri else str(missing)
    with pytest.raises(FetchError, match="cannot read"):
        fetch(server, settings, FeedSpec("local", source))


def test_directory_instead_of_file_fails(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot read"):
        fetch(server, settings, FeedSpec("local", str(tmp_path)))


def test_file_over_cap_fails(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_download_bytes=100)
    feed = tmp_path / "big.txt"
    feed.write_bytes(b"1.2.3.4\n" * 13)
    with pytest.raises(FetchError, match="exceeds the size cap of 100"):
        fetch(server, settings, FeedSpec("local", str(feed)))


def test_file_exactly_at_cap_is_read(server: FeedServer, tmp_path: Path) -> None:
    body = b"1.2.3.4\n" * 12
    settings = make_settings(tmp_path, max_download_bytes=len(body))
    feed = tmp_path / "feed.txt"
    feed.write_bytes(body)
    assert fetch(server, settings, FeedSpec("local", str(feed))).body == body


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("file:///srv/feeds/a%20b.txt", Path("/srv/feeds/a b.txt")),
        ("file://localhost/srv/x.txt", Path("/srv/x.txt")),
        ("/srv/feeds/x.txt", Path("/srv/feeds/x.txt")),
        ("relative/x.txt", Path("relative/x.txt")),
    ],
)
def test_source_path_maps_urls_and_paths(source: str, expected: Path) -> None:
    assert source_path(source) == expected


def dripping_server(requests: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering 200 with a body that trickles forever; records requests."""

    async def drip() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.01)
            yield b"1"

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=drip())

    return handle


def test_slow_drip_is_cut_off_by_the_whole_download_limit(tmp_path: Path) -> None:
    """Per-read timeouts never fire on a server sending a byte at a time."""

    requests: list[httpx.Request] = []
    handle = dripping_server(requests)

    settings = make_settings(tmp_path, download_timeout=0.2, retry_attempts=2)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
            with pytest.raises(FetchError, match=r"longer than 0\.2 s"):
                await Fetcher(settings, client).fetch(settings.feeds[0], None)

    run(scenario())
    assert len(requests) == 2


def test_304_to_an_unconditional_request_is_a_failure(tmp_path: Path) -> None:
    """Without validators there is nothing a 304 could confirm."""
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(304))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(FetchError, match="not conditional"):
                await Fetcher(settings, client).fetch(settings.feeds[0], None)

    run(scenario())


def test_retry_budget_bounds_the_attempts_themselves(tmp_path: Path) -> None:
    """A first attempt that eats the whole budget is cut at the budget and not retried."""

    requests: list[httpx.Request] = []
    handle = dripping_server(requests)

    settings = make_settings(tmp_path, download_timeout=60, retry_max_seconds=0.3, retry_attempts=5)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
            with pytest.raises(FetchError, match="longer than"):
                await Fetcher(settings, client).fetch(settings.feeds[0], None)

    run(scenario())
    assert len(requests) == 1
