"""The API through httpx's ASGI transport: answers, errors, probes, status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running, settings_for


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("1.2.3.4", True),
        ("1.2.3.5", False),
        ("10.20.0.0", True),
        ("10.20.255.255", True),
        ("10.21.0.0", False),
        ("10.19.255.255", False),
        ("::ffff:1.2.3.4", True),
        ("::ffff:10.20.1.1", True),
        ("2001:db8::1", True),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
        ("2001:db9::", False),
        ("::1", False),
        ("127.0.0.1", False),
    ],
)
def test_check_ip_answers_exact_json_for_listed_and_unlisted(
    tmp_path: Path, address: str, blocked: bool
) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            response = await client.get(f"/check_ip/{address}")
            assert response.status_code == 200
            assert response.content == (b'{"blocked": true}' if blocked else b'{"blocked": false}')
            assert response.headers["content-type"] == "application/json"
            assert response.headers["x-blocklist-version"] == "1"

    run(scenario())


BAD_ADDRESSES = [
    "",
    " 1.2.3.4",
    "1.2.3.4 ",
    "010.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "0x7f.0.0.1",
    "fe80::1%eth0",
    "[::1]",
    "1.2.3.0/24",
    "1.2.3.4-1.2.3.9",
    "example.com",
    "localhost",
    "\u0661.\u0662.\u0663.\u0664",  # Arabic-Indic digits
    "1.2.3.4\n",
    "1.2.3.4\x00",
    "::ffff:999.1.1.1",
    "a" * 5000,
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f",
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_address_gets_422_with_json_reason(tmp_path: Path, address: str) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            response = await client.get("/check_ip/" + quote(address, safe="/%:[]"))
            assert response.status_code == 422
            body = response.json()
            assert body["error"] == "invalid_address"
            assert isinstance(body["detail"], str)
            assert body["detail"]
            assert address.strip() not in body["detail"] or not address.strip()

    run(scenario())


def test_documented_route_and_fast_path_give_identical_answers(tmp_path: Path) -> None:
    """The OpenAPI-documented FastAPI route must not drift from the fast path."""

    async def scenario() -> None:
        app = create_app(settings_for(tmp_path))
        async with running(app) as fast:
            inner = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app), base_url="http://t")
            async with inner:
                for address in ["1.2.3.4", "9.9.9.9", "2001:db8::5", "010.1.1.1", "1.2.3.0/24", ""]:
                    a = await fast.get(f"/check_ip/{address}")
                    b = await inner.get(f"/check_ip/{address}")
                    assert (a.status_code, a.content) == (b.status_code, b.content), address
                    for name in ("x-blocklist-version", "cache-control", "x-content-type-options"):
                        assert a.headers.get(name) == b.headers.get(name), (address, name)

    run(scenario())


def test_check_ip_is_503_with_reason_before_any_version(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = settings_for(tmp_path, feed_text=None)  # feed file missing, no bootstrap
        async with running(create_app(settings), wait_ready=False) as client:
            response = await client.get("/check_ip/1.2.3.4")
            assert response.status_code == 503
            assert response.json()["error"] == "no_data"
            assert response.headers["cache-control"] == "no-store"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
            # A bad address is still a client error, whatever the data state.
            assert (await client.get("/check_ip/nope")).status_code == 422

    run(scenario())


def test_head_answers_headers_without_body(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            response = await client.head("/check_ip/1.2.3.4")
            assert response.status_code == 200
            assert response.content == b""
            assert response.headers["content-length"] == str(len(b'{"blocked": true}'))

    run(scenario())


def test_other_methods_and_paths_are_client_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            assert (await client.post("/check_ip/1.2.3.4")).status_code == 405
            # Starlette redirects to "/check_ip/", which is an empty address (422).
            assert (await client.get("/check_ip")).status_code == 307
            assert (await client.get("/nothing-here")).status_code == 404

    run(scenario())


def test_status_reports_mode_version_and_feed_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            status = (await client.get("/status")).json()
            assert status["mode"] == "embedded"
            assert status["ready"] is True
            assert status["version"]["number"] == 1
            assert status["version"]["ranges"] == {"ipv4": 3, "ipv6": 1}
            feed = status["feeds"]["local"]
            assert feed["entries"] == 4
            assert feed["last_outcome"] == "updated"
            assert feed["last_error"] is None
            assert feed["stale"] is False
            assert feed["refusals"] == 0
            assert feed["validators"]["sha256"]
            assert feed["next_run"] is not None
            assert status["stale"] is False

    run(scenario())


def test_refused_feed_shows_in_status_and_keeps_serving(tmp_path: Path) -> None:
    """An emptied feed is refused: old answers stay, the refusal is reported."""

    async def scenario() -> None:
        app = create_app(settings_for(tmp_path))
        async with running(app) as client:
            (tmp_path / "feed.txt").write_text("# emptied by its publisher\n")
            updater = app.app.state.runtime.updater
            outcome = await updater.sync_feed("local")
            assert outcome == "refused"
            status = (await client.get("/status")).json()
            assert status["feeds"]["local"]["refusals"] == 1
            assert "no entries" in status["feeds"]["local"]["last_error"]
            assert (await client.get("/check_ip/1.2.3.4")).json() == {"blocked": True}
            metrics = (await client.get("/metrics")).text
            assert 'blocklist_feed_syncs_total{feed="local",outcome="refused"}' in metrics

    run(scenario())


def test_new_version_is_swapped_in_and_numbered_higher(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = create_app(settings_for(tmp_path))
        async with running(app) as client:
            (tmp_path / "feed.txt").write_text("9.9.9.9\n1.2.3.4\n10.20.0.0/16\n2001:db8::/32\n")
            assert await app.app.state.runtime.updater.sync_feed("local") == "updated"
            response = await client.get("/check_ip/9.9.9.9")
            assert response.json() == {"blocked": True}
            assert response.headers["x-blocklist-version"] == "2"
            assert (await client.get("/check_ip/198.51.100.7")).json() == {"blocked": False}

    run(scenario())


def test_metrics_count_lookups_and_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            await client.get("/check_ip/1.2.3.4")
            await client.get("/check_ip/5.6.7.8")
            await client.get("/check_ip/5.6.7.8")
            await client.get("/check_ip/bad")
            await client.post("/check_ip/1.2.3.4")
            text = (await client.get("/metrics")).text
            assert 'blocklist_lookups_total{result="blocked"} 1.0' in text
            assert 'blocklist_lookups_total{result="allowed"} 2.0' in text
            assert 'blocklist_lookups_total{result="invalid"} 1.0' in text
            assert (
                'blocklist_http_requests_total{method="GET",route="/check_ip/{ip}",status="200"} 3.0'
            ) in text
            # Methods the fast path passes on carry the same route label.
            assert (
                'blocklist_http_requests_total{method="POST",route="/check_ip/{ip}",status="405"} 1.0' in text
            )
            assert "{ip:path}" not in text
            assert 'route="/readyz"' in text
            assert "blocklist_version 1.0" in text
            assert 'blocklist_feed_age_seconds{feed="local"}' in text

    run(scenario())


def test_openapi_documents_check_ip_with_its_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            schema = (await client.get("/openapi.json")).json()
            operation = schema["paths"]["/check_ip/{ip}"]["get"]
            assert {"200", "422", "503"} <= set(operation["responses"])
            assert (await client.get("/docs")).status_code == 200

    run(scenario())


def test_restart_answers_from_state_dir_without_network(tmp_path: Path) -> None:
    """A restart serves the last good version at once, even if the feed is gone."""

    async def scenario() -> None:
        settings = settings_for(tmp_path)
        async with running(create_app(settings)) as client:
            assert (await client.get("/check_ip/1.2.3.4")).json() == {"blocked": True}
        (tmp_path / "feed.txt").unlink()
        async with running(create_app(settings), wait_ready=False) as client:
            # Ready as soon as the lifespan started: no sync has happened yet.
            assert (await client.get("/readyz")).status_code == 200
            response = await client.get("/check_ip/1.2.3.4")
            assert response.json() == {"blocked": True}
            assert response.headers["x-blocklist-version"] == "1"

    run(scenario())


def test_bootstrap_snapshot_serves_and_is_reported_stale(tmp_path: Path) -> None:
    async def scenario() -> None:
        unreachable = httpx.MockTransport(lambda request: httpx.Response(503))
        settings = settings_for(tmp_path, feeds="ipsum", bootstrap=True)
        async with running(create_app(settings, transport=unreachable)) as client:
            # 77.90.185.20 is at the top of the bundled 2026-08-22 ipsum file.
            assert (await client.get("/check_ip/77.90.185.20")).json() == {"blocked": True}
            status = (await client.get("/status")).json()
            assert status["version"]["bootstrap"] is True
            assert status["version"]["number"] == 0
            assert status["feeds"]["ipsum"]["data_date"] == "2026-08-22"
            assert status["feeds"]["ipsum"]["stale"] is True
            assert status["stale"] is True

    run(scenario())


def test_error_bodies_are_valid_json_objects(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            response = await client.get("/check_ip/" + quote("\u202e1.2.3.4"))
            assert response.status_code == 422
            assert isinstance(json.loads(response.content), dict)

    run(scenario())


@pytest.mark.parametrize(
    ("max_age", "expected"), [(None, "max-age=300"), (60, "max-age=60"), (0, "no-cache")]
)
def test_answers_carry_cache_control_and_errors_are_never_cached(
    tmp_path: Path, max_age: int | None, expected: str
) -> None:
    """A cache in front of the service may keep an answer for a while, never an error."""
    overrides = {} if max_age is None else {"cache_max_age": max_age}

    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path, **overrides))) as client:
            for address in ("1.2.3.4", "9.9.9.9"):
                response = await client.get(f"/check_ip/{address}")
                assert response.headers["cache-control"] == expected
                assert response.headers["x-content-type-options"] == "nosniff"
            invalid = await client.get("/check_ip/1.2.3")
            assert invalid.status_code == 422
            assert invalid.headers["cache-control"] == "no-store"
            assert invalid.headers["x-content-type-options"] == "nosniff"

    run(scenario())
