"""API keys: hashed in the configuration, checked in constant time, per endpoint class."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from blocklist.errors import ConfigError
from blocklist.settings import Settings, load_settings
from ipchecking.app import create_app
from ipchecking.auth import key_digest
from tests.ipchecking.apphelpers import running, settings_for
from tests.ipchecking.controlhelpers import bearer, make_key

KEY = "s3cret-key-for-tests"
OTHER = "another-valid-key"


def protected(tmp_path: Path, protect: str) -> Settings:
    return settings_for(tmp_path, api_keys=f"{key_digest(OTHER)},sha256:{key_digest(KEY)}", protect=protect)


def test_status_endpoints_need_a_key_lookups_and_probes_do_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(protected(tmp_path, "status"))) as client:
            for path in ("/status", "/metrics", "/docs", "/openapi.json"):
                denied = await client.get(path)
                assert denied.status_code == 401, path
                assert denied.json() == {"error": "unauthorized", "detail": "a valid API key is required"}
                assert denied.headers["www-authenticate"] == "Bearer"
                assert (await client.get(path, headers={"X-API-Key": "wrong"})).status_code == 401
                assert (await client.get(path, headers={"X-API-Key": KEY})).status_code == 200
                bearer = {"Authorization": f"Bearer {OTHER}"}
                assert (await client.get(path, headers=bearer)).status_code == 200
            for path in ("/check_ip/1.2.3.4", "/healthz", "/readyz"):
                assert (await client.get(path)).status_code == 200, path

    asyncio.run(scenario())


def test_all_puts_lookups_behind_the_key_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(protected(tmp_path, "all"))) as client:
            assert (await client.get("/check_ip/1.2.3.4")).status_code == 401
            assert (await client.head("/check_ip/1.2.3.4")).status_code == 401
            allowed = await client.get("/check_ip/1.2.3.4", headers={"Authorization": f"bearer {KEY}"})
            assert allowed.json() == {"blocked": True}
            assert (await client.get("/healthz")).status_code == 200
            metrics = (await client.get("/metrics", headers={"X-API-Key": KEY})).text
            assert 'route="/check_ip/{ip}",status="401"' in metrics

    asyncio.run(scenario())


def test_no_key_is_needed_by_default(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            assert (await client.get("/status")).status_code == 200
            assert (await client.get("/check_ip/1.2.3.4")).status_code == 200

    asyncio.run(scenario())


def test_protection_without_configured_keys_accepts_stored_ones(tmp_path: Path) -> None:
    """Keys made with the CLI are enough: BLOCKLIST_API_KEYS may stay empty."""
    settings = settings_for(tmp_path, protect="all")
    stored = make_key(settings, "edge", "read")

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            assert (await client.get("/check_ip/1.2.3.4")).status_code == 401
            assert (await client.get("/check_ip/1.2.3.4", headers=bearer(stored))).json() == {"blocked": True}
            assert (await client.get("/status", headers={"X-API-Key": stored})).status_code == 200

    asyncio.run(scenario())


def test_a_key_in_clear_instead_of_its_digest_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLOCKLIST_API_KEYS", KEY)
    monkeypatch.setenv("BLOCKLIST_PROTECT", "status")
    with pytest.raises(ConfigError, match="digests of keys, not keys") as info:
        load_settings()
    assert KEY not in str(info.value)
