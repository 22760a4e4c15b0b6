"""Overrides, reports and reputation through the API in embedded mode: precedence,
expiry to the second, recovery, scopes, the audit log and persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running, settings_for
from tests.ipchecking.controlhelpers import Clock, bearer, make_key

#: Listed by the small feed of apphelpers: 1.2.3.4, 10.20.0.0/16, 2001:db8::/32, 198.51.100.7.
LISTED = "1.2.3.4"
UNLISTED = "203.0.113.9"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    settings = settings_for(
        tmp_path, reputation_decay_points=5, reputation_decay_interval="60s", history_purge_interval="1h"
    )
    keys = {scope: make_key(settings, f"{scope}-key", scope) for scope in ("read", "report", "admin")}
    return settings, keys


async def blocked(client: httpx.AsyncClient, ip: str) -> bool:
    answer = await client.get(f"/check_ip/{ip}")
    assert answer.status_code == 200, answer.text
    value: bool = answer.json()["blocked"]
    return value


async def override(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    answer = await client.post("/v1/overrides", json=body, headers=bearer(key))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_manual_block_of_an_unlisted_address_applies_at_once_and_is_removed(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            assert not await blocked(client, UNLISTED)
            created = await override(
                client, keys["admin"], network="203.0.113.0/24", action="block", reason="attack"
            )
            assert created["network"] == "203.0.113.0/24"
            assert created["created_by"] == "admin-key"
            assert created["expires_at"] is None
            assert await blocked(client, UNLISTED)
            explained = (await client.get(f"/v1/ip/{UNLISTED}")).json()
            assert explained["blocked"] is True
            assert explained["decided_by"] == "block"
            assert [o["id"] for o in explained["overrides"]] == [created["id"]]
            assert (
                await client.get(f"/v1/overrides/{created['id']}", headers=bearer(keys["admin"]))
            ).json() == created
            gone = await client.delete(f"/v1/overrides/{created['id']}", headers=bearer(keys["admin"]))
            assert gone.status_code == 204
            assert not await blocked(client, UNLISTED)
            again = await client.delete(f"/v1/overrides/{created['id']}", headers=bearer(keys["admin"]))
            assert again.status_code == 404
            assert again.json()["error"] == "unknown_override"

    asyncio.run(scenario())


def test_allow_wins_over_feeds_manual_blocks_and_reputation(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            assert await blocked(client, LISTED)
            await override(client, keys["admin"], network="1.2.3.0/24", action="block")
            for _ in range(3):
                await client.post(
                    "/v1/reports", json={"ip": LISTED, "violation": "scan"}, headers=bearer(keys["report"])
                )
            await override(client, keys["admin"], network=LISTED, action="allow", reason="office")
            assert not await blocked(client, LISTED)
            explained = (await client.get(f"/v1/ip/{LISTED}")).json()
            assert explained["decided_by"] == "allow"
            assert explained["blocked"] is False
            assert [o["action"] for o in explained["overrides"]] == ["allow", "block"]
            assert explained["matches"][0]["feed"] == "local"
            assert explained["reputation"]["blocked"] is True
            # Its neighbour is only under the block.
            assert await blocked(client, "1.2.3.5")
            metrics = (await client.get("/metrics")).text
            assert 'blocklist_overrides{action="allow"} 1.0' in metrics
            assert 'blocklist_overrides{action="block"} 1.0' in metrics
            assert "blocklist_reputation_blocked 1.0" in metrics
            assert "blocklist_control_up 1.0" in metrics
            control = (await client.get("/status")).json()["control"]
            assert control == {
                "loaded": True,
                "overrides": 2,
                "reputation_blocked": 1,
                "keys": 3,
                "last_error": None,
            }

    asyncio.run(scenario())


def test_an_override_expires_on_the_second_without_any_sync(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    clock = Clock()

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            await override(client, keys["admin"], network=UNLISTED, action="block", expires_in=60)
            await override(client, keys["admin"], network=LISTED, action="allow", expires_in=30)
            assert await blocked(client, UNLISTED)
            assert not await blocked(client, LISTED)
            clock.advance(29.999)
            assert not await blocked(client, LISTED)
            clock.advance(0.001)
            assert await blocked(client, LISTED)  # the allow ended: the feed decides again
            clock.advance(29.999)
            assert await blocked(client, UNLISTED)
            clock.advance(0.001)
            assert not await blocked(client, UNLISTED)
            assert (await client.get(f"/v1/ip/{UNLISTED}")).json()["overrides"] == []

    asyncio.run(scenario())


def test_reputation_blocks_below_the_threshold_and_lifts_when_predicted(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    """5 points every 60 s; scan costs 40, failed_login 5 but never below 50."""
    settings, keys = setup
    clock = Clock()
    ip = "192.0.2.10"

    async def report(violation: str, **extra: Any) -> dict[str, Any]:
        answer = await client.post(
            "/v1/reports", json={"ip": ip, "violation": violation, **extra}, headers=bearer(keys["report"])
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def scenario() -> None:
        nonlocal client
        async with running(app) as client:
            for _ in range(20):
                after = await report("failed_login", comment="wrong password")
            assert after["score"] == 50  # the decrease limit of failed_login
            assert not after["blocked"]
            assert not await blocked(client, ip)
            after = await report("scan")
            assert after["score"] == 10
            assert after["blocked"] is True
            # 40 points to recover at 5 per minute: 8 minutes from now.
            assert after["blocked_until"] is not None
            lifts = clock.now + 8 * 60
            assert await blocked(client, ip)
            clock.advance(8 * 60 - 0.001)
            assert await blocked(client, ip)
            explained = (await client.get(f"/v1/ip/{ip}")).json()
            assert explained["decided_by"] == "reputation"
            assert explained["reputation"]["score"] == 45
            assert explained["reputation"]["reports"][0]["violation"] == "scan"
            clock.advance(0.001)
            assert clock.now == lifts
            assert not await blocked(client, ip)
            assert (await client.get(f"/v1/ip/{ip}")).json()["reputation"]["score"] == 50
            # Fully recovered (50 more points: 10 minutes), the state is deleted by the purge.
            clock.advance(10 * 60 - 1)
            assert await app.app.state.control.store.purge(clock.now) == 0
            clock.advance(1)
            assert await app.app.state.control.store.purge(clock.now) == 1
            assert (await client.get(f"/v1/ip/{ip}")).json()["reputation"] is None

    client: httpx.AsyncClient
    app = create_app(settings, clock=clock)
    asyncio.run(scenario())


def test_suppressed_recovery_delays_the_lift(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    clock = Clock()

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            body = {"ip": "192.0.2.11", "violation": "scan", "suppress_recovery": 3600}
            for _ in range(2):
                answer = await client.post("/v1/reports", json=body, headers=bearer(keys["report"]))
            assert answer.json()["score"] == 20
            clock.advance(3600)
            assert await blocked(client, "192.0.2.11")  # nothing recovered during the suppression
            clock.advance(6 * 60)  # 30 points at 5 per minute
            assert not await blocked(client, "192.0.2.11")

    asyncio.run(scenario())


def test_ipv6_reports_count_against_the_64_and_mapped_ipv4_as_ipv4(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            reports = [
                {"ip": "2001:db9:1:2::1", "violation": "scan"},
                {"ip": "2001:db9:1:2:ffff::7", "violation": "scan"},
                {"ip": "::ffff:192.0.2.20", "violation": "scan"},
                {"ip": "192.0.2.20", "violation": "scan"},
            ]
            answer = await client.post("/v1/reports", json=reports, headers=bearer(keys["report"]))
            results = answer.json()["results"]
            assert [r["key"] for r in results] == ["2001:db9:1:2::/64"] * 2 + ["192.0.2.20"] * 2
            assert [r["score"] for r in results] == [60, 20, 60, 20]
            assert await blocked(client, "2001:db9:1:2:abcd::1")
            assert not await blocked(client, "2001:db9:1:3::1")
            assert await blocked(client, "::ffff:192.0.2.20")

    asyncio.run(scenario())


def test_a_batch_applies_the_good_items_and_explains_the_bad_ones(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            items = [
                {"ip": "192.0.2.30", "violation": "scan"},
                {"ip": "192.0.2.31", "violation": "no_such_thing"},
                {"ip": "not-an-ip", "violation": "scan"},
                {"ip": "192.0.2.32"},
                {"ip": "192.0.2.30", "violation": "spam"},
            ]
            answer = await client.post("/v1/reports", json=items, headers=bearer(keys["report"]))
            assert answer.status_code == 200
            results = answer.json()["results"]
            assert results[0]["score"] == 60
            assert results[1]["error"] == "unknown_violation"
            assert "failed_login" in results[1]["detail"]
            assert results[2]["error"] == "invalid_address"
            assert results[3]["error"] == "invalid_report"
            assert results[4]["score"] == 40
            single = await client.post(
                "/v1/reports", json={"ip": "192.0.2.31", "violation": "nope"}, headers=bearer(keys["report"])
            )
            assert single.status_code == 422
            assert single.json()["error"] == "unknown_violation"
            too_many = [{"ip": "192.0.2.40", "violation": "scan"}] * 1001
            big = await client.post("/v1/reports", json=too_many, headers=bearer(keys["report"]))
            assert big.status_code == 422
            assert big.json()["error"] == "too_many_reports"
            assert (await client.get("/v1/violations")).json()[0] == {
                "name": "failed_login",
                "penalty": 5,
                "decrease_limit": 50,
            }

    asyncio.run(scenario())


def test_no_key_is_401_a_key_without_the_scope_403_a_bad_body_422(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    block = {"network": UNLISTED, "action": "block"}

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            for headers in ({}, bearer("blk_not-a-key")):
                denied = await client.post("/v1/overrides", json=block, headers=headers)
                assert denied.status_code == 401
                assert denied.json()["error"] == "unauthorized"
            for scope in ("read", "report"):
                denied = await client.post("/v1/overrides", json=block, headers=bearer(keys[scope]))
                assert denied.status_code == 403, scope
                assert "admin" in denied.json()["detail"]
            assert (await client.get("/v1/audit", headers=bearer(keys["report"]))).status_code == 403
            report = {"ip": UNLISTED, "violation": "scan"}
            assert (
                await client.post("/v1/reports", json=report, headers=bearer(keys["read"]))
            ).status_code == 403
            assert (
                await client.post("/v1/reports", json=report, headers=bearer(keys["admin"]))
            ).status_code == 200
            admin = bearer(keys["admin"])
            for bad, error in (
                ({"network": "203.0.113.7/24", "action": "block"}, "invalid_network"),
                ({"network": "300.1.1.1", "action": "block"}, "invalid_network"),
                ({"network": "0.0.0.0/4", "action": "block"}, "too_broad"),
                (
                    {"network": UNLISTED, "action": "block", "expires_in": 5, "expires_at": "2030-01-01"},
                    "invalid_expiry",
                ),
                ({"network": UNLISTED, "action": "block", "expires_at": "2001-01-01"}, "invalid_expiry"),
                ({"network": UNLISTED, "action": "block", "expires_at": "soon"}, "invalid_expiry"),
                (
                    {"network": UNLISTED, "action": "block", "expires_at": "9999-12-31T23:59:59-01:00"},
                    "invalid_expiry",
                ),
                ({"network": UNLISTED, "action": "deny"}, "invalid_request"),
                ({"network": UNLISTED, "action": "block", "extra": 1}, "invalid_request"),
            ):
                answer = await client.post("/v1/overrides", json=bad, headers=admin)
                assert answer.status_code == 422, bad
                assert answer.json()["error"] == error, (bad, answer.json())
            assert (
                "network is 203.0.113.0/24"
                in (
                    await client.post(
                        "/v1/overrides", json={"network": "203.0.113.7/24", "action": "block"}, headers=admin
                    )
                ).json()["detail"]
            )
            not_json = await client.post(
                "/v1/overrides", content=b"{", headers={**admin, "content-type": "application/json"}
            )
            assert not_json.status_code == 422

    asyncio.run(scenario())


def test_every_change_is_audited_with_the_keys_name_newest_first(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    admin = bearer(keys["admin"])

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            first = await override(client, keys["admin"], network=UNLISTED, action="block", reason="r1")
            await override(client, keys["admin"], network="192.0.2.0/24", action="allow", reason="office")
            await client.delete(f"/v1/overrides/{first['id']}", headers=admin)
            page = (await client.get("/v1/audit?limit=2", headers=admin)).json()
            assert [e["action"] for e in page["entries"]] == ["override.delete", "override.create"]
            assert page["entries"][0]["actor"] == "admin-key"
            assert page["entries"][0]["detail"]["network"] == f"{UNLISTED}/32"
            for bad in ("9" * 40, "x", "-1"):
                refused = await client.get(f"/v1/audit?before={bad}", headers=admin)
                assert refused.status_code == 422, bad
                assert refused.json()["error"] == "invalid_before"
            rest = (await client.get(f"/v1/audit?before={page['next']}", headers=admin)).json()
            actions = [e["action"] for e in rest["entries"]]
            assert actions[0] == "override.create"
            assert actions[1:] == ["key.create"] * 3
            assert {e["target"] for e in rest["entries"][1:]} == {"read-key", "report-key", "admin-key"}
            listing = (await client.get("/v1/overrides?action=allow", headers=admin)).json()
            assert listing["total"] == 1
            assert listing["overrides"][0]["reason"] == "office"

    asyncio.run(scenario())


def test_overrides_and_reputation_survive_a_restart(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def first_life() -> None:
        async with running(create_app(settings)) as client:
            await override(client, keys["admin"], network=UNLISTED, action="block")
            await override(client, keys["admin"], network=LISTED, action="allow")
            for _ in range(2):
                await client.post(
                    "/v1/reports",
                    json={"ip": "192.0.2.50", "violation": "scan"},
                    headers=bearer(keys["report"]),
                )

    async def second_life() -> None:
        async with running(create_app(settings)) as client:
            assert await blocked(client, UNLISTED)
            assert not await blocked(client, LISTED)
            assert await blocked(client, "192.0.2.50")
            assert (await client.get("/v1/ip/192.0.2.50")).json()["reputation"]["score"] == 20

    asyncio.run(first_life())
    asyncio.run(second_life())


def test_protect_status_puts_explain_and_violations_behind_any_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, protect="status")
    read = make_key(settings, "reader", "read")

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            assert (await client.get(f"/v1/ip/{LISTED}")).status_code == 401
            assert (await client.get(f"/v1/ip/{LISTED}", headers=bearer(read))).status_code == 200
            assert (await client.get("/v1/violations", headers=bearer(read))).status_code == 200
            assert (await client.get(f"/check_ip/{LISTED}")).status_code == 200

    asyncio.run(scenario())
