"""``POST /v1/check``: the answers ``/check_ip`` gives, in order, from one version;
invalid entries answered in place; oversized or malformed bodies refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from blocklist.settings import Settings
from blocklistupdater.redispublish import RedisPublisher
from ipchecking.app import create_app
from ipchecking.batchroutes import MAX_BATCH, MAX_BATCH_BYTES
from tests.ipchecking.apphelpers import running, settings_for
from tests.ipchecking.controlhelpers import bearer, make_key
from tests.ipchecking.test_live import ENTRIES, live_settings, probe_addresses
from tests.redisserver import redis_server
from tests.versions import make_version

#: Listed by the small feed of apphelpers: 1.2.3.4, 10.20.0.0/16, 2001:db8::/32, 198.51.100.7.
MIXED: list[Any] = [
    "1.2.3.4",
    "203.0.113.9",
    "10.20.255.255",
    "10.21.0.0",
    "2001:db8::1",
    "::ffff:198.51.100.7",
    "010.1.1.1",
    "",
    "1.2.3.4",
    "2001:db8::/32",
]


async def singles(client: httpx.AsyncClient, ips: list[Any]) -> list[dict[str, Any]]:
    """What ``/check_ip`` answers for each entry, in the batch's item shape."""
    out: list[dict[str, Any]] = []
    for ip in ips:
        answer = await client.get(f"/check_ip/{ip}") if ip else None
        if answer is not None and answer.status_code == 200:
            out.append({"ip": ip, "blocked": answer.json()["blocked"]})
        else:
            detail = answer.json()["detail"] if answer is not None else "empty address"
            out.append({"ip": ip, "error": "invalid_address", "detail": detail})
    return out


def test_batch_answers_each_entry_as_check_ip_does_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            answer = await client.post("/v1/check", json={"ips": MIXED})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            number = (await client.get("/readyz")).json()["version"]
            assert body["version"] == number
            assert answer.headers["x-blocklist-version"] == str(number)
            assert answer.headers["cache-control"] == "no-store"
            assert body["results"] == await singles(client, MIXED)
            assert [r.get("blocked") for r in body["results"][:6]] == [True, False, True, False, True, True]
            empty = await client.post("/v1/check", json={"ips": []})
            assert empty.json() == {"version": number, "results": []}

    asyncio.run(scenario())


def test_batch_follows_overrides_like_check_ip(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    admin = make_key(settings, "admin-key", "admin")

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            for network, action in (("1.2.3.4/32", "allow"), ("203.0.113.0/24", "block")):
                created = await client.post(
                    "/v1/overrides", json={"network": network, "action": action}, headers=bearer(admin)
                )
                assert created.status_code == 201, created.text
            answer = await client.post("/v1/check", json={"ips": ["1.2.3.4", "203.0.113.9", "10.20.0.1"]})
            assert [r["blocked"] for r in answer.json()["results"]] == [False, True, True]
            assert answer.json()["results"] == await singles(client, ["1.2.3.4", "203.0.113.9", "10.20.0.1"])

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", '"ips"'),
        (b'{"ips": "1.2.3.4"}', '"ips"'),
        (b'{"addresses": []}', '"ips"'),
        (b"[" * 100_000, "not JSON"),
        (b'{"ips": ["1.2.3.4", 5]}', "entry 1 is not"),
        (b'{"ips": [null]}', "entry 0 is not"),
        (b'{"ips": [{"ip": "1.2.3.4"}]}', "entry 0 is not"),
        (json.dumps({"ips": ["1.2.3.4"] * (MAX_BATCH + 1)}).encode(), f"at most {MAX_BATCH}"),
    ],
)
def test_a_body_that_is_not_a_batch_is_a_422_with_a_reason(tmp_path: Path, body: bytes, reason: str) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            answer = await client.post(
                "/v1/check", content=body, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"] == "invalid_request"
            assert reason in answer.json()["detail"]

    asyncio.run(scenario())


def test_a_body_past_the_byte_cap_is_a_413_declared_or_streamed(tmp_path: Path) -> None:
    big = json.dumps({"ips": ["1.2.3.4" + " " * 100] * 11_000}).encode()
    assert len(big) > MAX_BATCH_BYTES

    async def chunks() -> Any:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            declared = await client.post("/v1/check", content=big)
            streamed = await client.post("/v1/check", content=chunks())
            for answer in (declared, streamed):
                assert answer.status_code == 413, answer.text
                assert answer.json()["error"] == "too_large"
            assert "content-length" not in streamed.request.headers
            assert MAX_BATCH == 10_000
            full = json.dumps({"ips": ["2001:db8:ffff:ffff:ffff:ffff:255.255.255.255"] * MAX_BATCH}).encode()
            assert len(full) <= MAX_BATCH_BYTES, "the largest valid batch fits under the cap"
            assert (await client.post("/v1/check", content=full)).status_code == 200

    asyncio.run(scenario())


def test_batch_without_a_version_is_a_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path, feed_text=None)), wait_ready=False) as client:
            answer = await client.post("/v1/check", json={"ips": ["1.2.3.4"]})
            assert answer.status_code == 503
            assert answer.json()["error"] == "no_data"

    asyncio.run(scenario())


def test_batch_is_protected_like_check_ip(tmp_path: Path) -> None:
    async def scenario(settings: Settings, key: str, needs_key: bool) -> None:
        async with running(create_app(settings), wait_ready=False) as client:
            bare = await client.post("/v1/check", json={"ips": ["1.2.3.4"]})
            assert (bare.status_code == 401) is needs_key
            keyed = await client.post("/v1/check", json={"ips": ["1.2.3.4"]}, headers=bearer(key))
            assert keyed.status_code != 401

    for protect, needs_key in (("none", False), ("status", False), ("all", True)):
        (tmp_path / protect).mkdir()
        settings = settings_for(tmp_path / protect, protect=protect)
        asyncio.run(scenario(settings, make_key(settings, "reader", "read"), needs_key))


def test_batch_is_documented_in_the_openapi_schema(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(settings_for(tmp_path))) as client:
            schema = (await client.get("/openapi.json")).json()
            operation = schema["paths"]["/v1/check"]["post"]
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["properties"]["ips"]["maxItems"] == MAX_BATCH
            assert {"200", "413", "422", "503"} <= set(operation["responses"])

    asyncio.run(scenario())


@pytest.mark.integration
def test_batch_in_distributed_mode_local_and_live_matches_check_ip(tmp_path: Path) -> None:
    with redis_server(tmp_path / "primary") as primary:

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            await RedisPublisher(writer).publish(make_version(4, *ENTRIES))
            probes: list[Any] = [*probe_addresses(), "1.2.3", "7"]
            for settings in (Settings(redis_url=primary.url), live_settings(primary)):
                async with running(create_app(settings)) as client:
                    answer = await client.post("/v1/check", json={"ips": probes})
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["version"] == 4
                    assert answer.json()["results"] == await singles(client, probes)
            await writer.aclose()

        asyncio.run(scenario())
