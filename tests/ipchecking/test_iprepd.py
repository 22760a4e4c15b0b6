"""The iprepd-compatible API under ``/iprepd``, end to end in embedded mode: requests shaped
as iprepd's README shows them, over the same reputation and overrides as ``/v1`` and
``/check_ip``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from blocklist import __version__
from blocklist.history import iso_moment
from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running, settings_for
from tests.ipchecking.controlhelpers import Clock, bearer, make_key

#: Violations as in iprepd's README: violation1 costs 5 down to 50, violation2 25 down to 0.
VIOLATIONS = "violation1:5:50,violation2:25:0"
#: iprepd's zero time: no suppression in effect.
ZERO_TIME = "0001-01-01T00:00:00Z"
IP = "10.0.0.1"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    settings = settings_for(
        tmp_path,
        violations=VIOLATIONS,
        reputation_decay_points=5,
        reputation_decay_interval="60s",
        history_purge_interval="1h",
    )
    keys = {scope: make_key(settings, f"{scope}-key", scope) for scope in ("read", "report", "admin")}
    return settings, keys


def apikey(key: str) -> dict[str, str]:
    """iprepd's header: ``Authorization: APIKey <key>``."""
    return {"Authorization": f"APIKey {key}"}


def violation(ip: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"object": ip, "type": "ip", "violation": name, **extra}


async def put_violation(client: httpx.AsyncClient, key: str, ip: str, name: str, **extra: Any) -> None:
    answer = await client.put(
        f"/iprepd/violations/type/ip/{ip}", json=violation(ip, name, **extra), headers=apikey(key)
    )
    assert answer.status_code == 200, answer.text


async def put_reputation(client: httpx.AsyncClient, key: str, ip: str, score: int, **extra: Any) -> None:
    body = {"object": ip, "type": "ip", "reputation": score, **extra}
    answer = await client.put(f"/iprepd/type/ip/{ip}", json=body, headers=apikey(key))
    assert answer.status_code == 200, answer.text


async def reputation(client: httpx.AsyncClient, key: str, ip: str) -> dict[str, Any] | None:
    """iprepd's document for ``ip``, or None for its 404."""
    answer = await client.get(f"/iprepd/type/ip/{ip}", headers=apikey(key))
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def score(client: httpx.AsyncClient, key: str, ip: str) -> int | None:
    found = await reputation(client, key, ip)
    return None if found is None else int(found["reputation"])


async def blocked(client: httpx.AsyncClient, ip: str) -> bool:
    answer = await client.get(f"/check_ip/{ip}")
    assert answer.status_code == 200, answer.text
    value: bool = answer.json()["blocked"]
    return value


async def explained(client: httpx.AsyncClient, ip: str) -> dict[str, Any]:
    """The ``reputation`` part of ``GET /v1/ip/<ip>`` (the address must have some)."""
    found = await explained_or_none(client, ip)
    assert found is not None
    return found


async def explained_or_none(client: httpx.AsyncClient, ip: str) -> dict[str, Any] | None:
    """The ``reputation`` part of ``GET /v1/ip/<ip>``: None for an address without reputation."""
    answer = await client.get(f"/v1/ip/{ip}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] | None = answer.json()["reputation"]
    return body


def test_violation1_lowers_by_5_never_below_50_and_blocks_only_below_50(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    clock = Clock()

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            assert await reputation(client, keys["read"], IP) is None
            for expected in range(95, 45, -5):
                await put_violation(client, keys["report"], IP, "violation1")
                assert await score(client, keys["read"], IP) == expected
                assert not await blocked(client, IP)
            for _ in range(3):
                await put_violation(client, keys["report"], IP, "violation1")
            document = await reputation(client, keys["read"], IP)
            assert document == {
                "object": IP,
                "type": "ip",
                "reputation": 50,
                "reviewed": False,
                "lastupdated": iso_moment(clock.now),
                "decayafter": ZERO_TIME,
            }
            same = await explained(client, IP)
            assert same["score"] == 50
            assert same["blocked"] is False
            assert not await blocked(client, IP)
            # violation2 ignores violation1's floor: 50 - 25 is below the threshold.
            await put_violation(client, keys["report"], IP, "violation2")
            assert await score(client, keys["read"], IP) == 25
            assert await blocked(client, IP)
            same = await explained(client, IP)
            assert same["score"] == 25
            assert same["blocked"] is True
            assert same["reports"][0]["violation"] == "violation2"
            assert same["reports"][0]["reporter"] == "report-key"
            assert (await client.get(f"/v1/ip/{IP}")).json()["decided_by"] == "reputation"
            # At or below violation1's limit, violation1 no longer lowers it.
            await put_violation(client, keys["report"], IP, "violation1")
            assert await score(client, keys["read"], IP) == 25

    asyncio.run(scenario())


def test_violation2_lowers_by_25_down_to_0(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    clock = Clock()
    ip = "10.0.0.3"

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            for expected in (75, 50, 25, 0, 0):
                await put_violation(client, keys["report"], ip, "violation2")
                assert await score(client, keys["read"], ip) == expected
                assert await blocked(client, ip) is (expected < 50)
                assert (await explained(client, ip))["score"] == expected

    asyncio.run(scenario())


def test_bulk_violations_apply_each_item(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    clock = Clock()
    body = [
        {"object": "10.0.0.1", "type": "ip", "violation": "violation1"},
        {"object": "10.0.0.2", "type": "ip", "violation": "violation1"},
        {"object": "10.0.0.3", "type": "ip", "violation": "violation2"},
    ]

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            answer = await client.put("/iprepd/violations/type/ip", json=body, headers=apikey(keys["report"]))
            assert answer.status_code == 200, answer.text
            assert [await score(client, keys["read"], f"10.0.0.{n}") for n in (1, 2, 3)] == [95, 95, 75]
            assert (await explained(client, "10.0.0.3"))["score"] == 75
            # What cannot be applied is skipped (iprepd logs it); the rest still is.
            mixed = [
                {"object": "10.0.0.4", "type": "ip", "violation": "no_such_violation"},
                {"object": "not-an-address", "type": "ip", "violation": "violation2"},
                {"object": "10.0.0.5", "type": "email", "violation": "violation2"},
                {"object": "10.0.0.3", "type": "ip", "violation": "violation2"},
                {"object": "10.0.0.3", "type": "ip", "violation": "violation2"},
            ]
            answer = await client.put(
                "/iprepd/violations/type/ip", json=mixed, headers=apikey(keys["report"])
            )
            assert answer.status_code == 200, answer.text
            assert await score(client, keys["read"], "10.0.0.3") == 25
            assert await blocked(client, "10.0.0.3")
            assert await reputation(client, keys["read"], "10.0.0.4") is None
            assert await reputation(client, keys["read"], "10.0.0.5") is None
            too_many = [violation(f"10.1.{n // 250}.{n % 250}", "violation2") for n in range(1001)]
            answer = await client.put(
                "/iprepd/violations/type/ip", json=too_many, headers=apikey(keys["report"])
            )
            assert answer.status_code == 422
            assert await reputation(client, keys["read"], "10.1.0.0") is None

    asyncio.run(scenario())


def test_an_unknown_violation_is_answered_200_and_changes_nothing(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            answer = await client.put(
                f"/iprepd/violations/type/ip/{IP}",
                json=violation(IP, "no_such_violation"),
                headers=apikey(keys["report"]),
            )
            assert answer.status_code == 200, answer.text
            assert await reputation(client, keys["read"], IP) is None
            assert await explained_or_none(client, IP) is None

    asyncio.run(scenario())


def test_get_violations_lists_them_in_iprepds_shape(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            answer = await client.get("/iprepd/violations", headers=apikey(keys["read"]))
            assert answer.status_code == 200, answer.text
            assert answer.json() == [
                {"name": "violation1", "penalty": 5, "decreaselimit": 50},
                {"name": "violation2", "penalty": 25, "decreaselimit": 0},
            ]

    asyncio.run(scenario())


def test_put_reputation_sets_the_score_and_reviewed_for_both_apis(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    clock = Clock()

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            await put_reputation(client, keys["report"], IP, 75)
            assert await reputation(client, keys["read"], IP) == {
                "object": IP,
                "type": "ip",
                "reputation": 75,
                "reviewed": False,
                "lastupdated": iso_moment(clock.now),
                "decayafter": ZERO_TIME,
            }
            assert not await blocked(client, IP)
            clock.advance(30)
            await put_reputation(client, keys["report"], IP, 40, reviewed=True)
            document = await reputation(client, keys["read"], IP)
            assert document is not None
            assert document["reputation"] == 40
            assert document["reviewed"] is True
            assert document["lastupdated"] == iso_moment(clock.now)
            assert await blocked(client, IP)
            same = await explained(client, IP)
            assert (same["score"], same["blocked"]) == (40, True)
            # A violation keeps the review mark while the address is below 100.
            await put_violation(client, keys["report"], IP, "violation2")
            document = await reputation(client, keys["read"], IP)
            assert document is not None
            assert (document["reputation"], document["reviewed"]) == (15, True)
            # Recovery starts at the PUT: 5 points a minute, on the injected clock.
            await put_reputation(client, keys["report"], IP, 45)
            clock.advance(59.999)
            assert await score(client, keys["read"], IP) == 45
            assert await blocked(client, IP)
            clock.advance(0.001)
            assert await score(client, keys["read"], IP) == 50
            assert not await blocked(client, IP)
            assert (await explained(client, IP))["score"] == 50
            # Fully recovered is as good as unknown.
            clock.advance(10 * 60)
            assert await reputation(client, keys["read"], IP) is None

    asyncio.run(scenario())


def test_put_reputation_with_decayafter_holds_the_score_until_then(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    clock = Clock()

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            until = iso_moment(clock.now + 600)
            await put_reputation(client, keys["report"], IP, 20, decayafter=until)
            document = await reputation(client, keys["read"], IP)
            assert document is not None
            assert (document["reputation"], document["decayafter"]) == (20, until)
            clock.advance(600)
            assert await score(client, keys["read"], IP) == 20
            clock.advance(60)
            document = await reputation(client, keys["read"], IP)
            assert document is not None
            assert (document["reputation"], document["decayafter"]) == (25, ZERO_TIME)

    asyncio.run(scenario())


def test_suppress_recovery_shows_decayafter_and_delays_the_lift(
    setup: tuple[Settings, dict[str, str]],
) -> None:
    settings, keys = setup
    clock = Clock()
    ip = "10.0.0.7"

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            for _ in range(3):
                await put_violation(client, keys["report"], ip, "violation2", suppress_recovery=3600)
            start = clock.now + 3600
            document = await reputation(client, keys["read"], ip)
            assert document is not None
            assert (document["reputation"], document["decayafter"]) == (25, iso_moment(start))
            assert await blocked(client, ip)
            clock.advance(3600)  # nothing recovered while suppressed
            assert await score(client, keys["read"], ip) == 25
            assert await blocked(client, ip)
            assert (await explained(client, ip))["recovery_starts"] == iso_moment(start)
            clock.advance(60)
            document = await reputation(client, keys["read"], ip)
            assert document is not None
            assert (document["reputation"], document["decayafter"]) == (30, ZERO_TIME)
            # 25 points at 5 a minute: the block lifts 5 minutes after the suppression.
            clock.now = start + 5 * 60 - 0.001
            assert await score(client, keys["read"], ip) == 45
            assert await blocked(client, ip)
            clock.advance(0.001)
            assert await score(client, keys["read"], ip) == 50
            assert not await blocked(client, ip)
            same = await explained(client, ip)
            assert (same["score"], same["blocked"]) == (50, False)

    asyncio.run(scenario())


def test_suppress_recovery_of_more_than_14_days_is_refused(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            answer = await client.put(
                f"/iprepd/violations/type/ip/{IP}",
                json=violation(IP, "violation2", suppress_recovery=14 * 86400 + 1),
                headers=apikey(keys["report"]),
            )
            assert answer.status_code == 422
            assert await reputation(client, keys["read"], IP) is None

    asyncio.run(scenario())


def test_delete_forgets_the_reputation_and_lifts_the_block(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    admin = bearer(keys["admin"])

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            await put_reputation(client, keys["report"], IP, 10)
            assert await blocked(client, IP)
            answer = await client.delete(f"/iprepd/type/ip/{IP}", headers=apikey(keys["report"]))
            assert answer.status_code == 200, answer.text
            gone = await client.get(f"/iprepd/type/ip/{IP}", headers=apikey(keys["read"]))
            assert gone.status_code == 404
            assert not await blocked(client, IP)
            assert await explained_or_none(client, IP) is None
            entry = (await client.get("/v1/audit", headers=admin)).json()["entries"][0]
            assert (entry["action"], entry["actor"], entry["target"]) == (
                "reputation.delete",
                "report-key",
                IP,
            )

    asyncio.run(scenario())


def test_an_allow_override_makes_get_answer_404(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    admin = bearer(keys["admin"])

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            await put_reputation(client, keys["report"], IP, 10)
            assert await score(client, keys["read"], IP) == 10
            created = await client.post(
                "/v1/overrides", json={"network": "10.0.0.0/24", "action": "allow"}, headers=admin
            )
            assert created.status_code == 201, created.text
            exempt = await client.get(f"/iprepd/type/ip/{IP}", headers=apikey(keys["read"]))
            assert exempt.status_code == 404
            assert not await blocked(client, IP)
            # The reputation is still there, only exempted.
            assert (await explained(client, IP))["score"] == 10
            removed = await client.delete(f"/v1/overrides/{created.json()['id']}", headers=admin)
            assert removed.status_code == 204
            assert await score(client, keys["read"], IP) == 10
            assert await blocked(client, IP)

    asyncio.run(scenario())


def test_keys_and_scopes(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    reputation_body = {"object": IP, "type": "ip", "reputation": 75}
    bulk = [violation(IP, "violation1")]

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            for headers in ({}, apikey("blk_not-a-key"), {"Authorization": f"Hawk {keys['admin']}"}):
                for method, path, body in (
                    ("GET", f"/iprepd/type/ip/{IP}", None),
                    ("GET", "/iprepd/violations", None),
                    ("PUT", f"/iprepd/type/ip/{IP}", reputation_body),
                    ("DELETE", f"/iprepd/type/ip/{IP}", None),
                    ("PUT", f"/iprepd/violations/type/ip/{IP}", violation(IP, "violation1")),
                    ("PUT", "/iprepd/violations/type/ip", bulk),
                ):
                    answer = await client.request(method, path, json=body, headers=headers)
                    assert answer.status_code == 401, (method, path, headers)
                    assert answer.json()["error"] == "unauthorized"
            read = apikey(keys["read"])
            assert (await client.get(f"/iprepd/type/ip/{IP}", headers=read)).status_code == 404
            assert (await client.get("/iprepd/violations", headers=read)).status_code == 200
            for method, path, body in (
                ("PUT", f"/iprepd/type/ip/{IP}", reputation_body),
                ("DELETE", f"/iprepd/type/ip/{IP}", None),
                ("PUT", f"/iprepd/violations/type/ip/{IP}", violation(IP, "violation1")),
                ("PUT", "/iprepd/violations/type/ip", bulk),
            ):
                denied = await client.request(method, path, json=body, headers=read)
                assert denied.status_code == 403, (method, path)
                assert "report" in denied.json()["detail"]
            assert await reputation(client, keys["read"], IP) is None  # nothing was changed
            answer = await client.put(
                f"/iprepd/type/ip/{IP}", json=reputation_body, headers=apikey(keys["report"])
            )
            assert answer.status_code == 200
            assert await score(client, keys["read"], IP) == 75
            await put_violation(client, keys["admin"], IP, "violation1")
            assert await score(client, keys["report"], IP) == 70
            assert await score(client, keys["admin"], IP) == 70

    asyncio.run(scenario())


@pytest.mark.parametrize("protect", ["none", "status", "all"])
def test_heartbeats_and_version_answer_without_a_key(tmp_path: Path, protect: str) -> None:
    settings = settings_for(tmp_path, violations=VIOLATIONS, protect=protect)

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            heartbeat = await client.get("/iprepd/__heartbeat__")
            assert heartbeat.status_code == 200, heartbeat.text
            assert heartbeat.json() == {"status": "ok"}
            lb = await client.get("/iprepd/__lbheartbeat__")
            assert lb.status_code == 200
            assert lb.json() == {"status": "ok"}
            version = await client.get("/iprepd/__version__")
            assert version.status_code == 200
            assert version.json()["version"] == __version__
            assert set(version.json()) == {"source", "version", "commit", "build"}
            # The rest still needs a key.
            assert (await client.get("/iprepd/violations")).status_code == 401

    asyncio.run(scenario())


def test_a_put_reputation_is_audited_with_the_keys_name(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            await put_reputation(client, keys["report"], IP, 75, reviewed=True)
            answer = await client.get("/v1/audit", headers=bearer(keys["admin"]))
            assert answer.status_code == 200, answer.text
            entry = answer.json()["entries"][0]
            assert entry["action"] == "reputation.set"
            assert entry["actor"] == "report-key"
            assert entry["target"] == IP
            assert entry["detail"] == {"score": 75, "reviewed": True}

    asyncio.run(scenario())


def test_ipv6_counts_against_its_64(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            await put_violation(client, keys["report"], "2001:db9:1:2::1", "violation2")
            await put_violation(client, keys["report"], "2001:db9:1:2::ffff", "violation2")
            document = await reputation(client, keys["read"], "2001:db9:1:2::ffff")
            assert document is not None
            assert (document["object"], document["reputation"]) == ("2001:db9:1:2::ffff", 50)
            await put_violation(client, keys["report"], "2001:db9:1:2::7", "violation2")
            assert await blocked(client, "2001:db9:1:2:abcd::1")
            assert not await blocked(client, "2001:db9:1:3::1")
            assert await reputation(client, keys["read"], "2001:db9:1:3::1") is None

    asyncio.run(scenario())


def test_bad_requests_are_refused(setup: tuple[Settings, dict[str, str]]) -> None:
    settings, keys = setup
    report = apikey(keys["report"])

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            for method, path, body in (
                ("GET", "/iprepd/type/ip/not-an-address", None),
                ("PUT", "/iprepd/type/ip/300.1.1.1", {"object": "300.1.1.1", "type": "ip", "reputation": 5}),
                ("DELETE", "/iprepd/type/ip/300.1.1.1", None),
                ("PUT", "/iprepd/violations/type/ip/300.1.1.1", violation("300.1.1.1", "violation1")),
            ):
                answer = await client.request(method, path, json=body, headers=report)
                assert answer.status_code == 400, (method, path)
                assert answer.json()["error"] == "invalid_address"
            wrong_type = await client.put(
                f"/iprepd/type/ip/{IP}", json={"object": IP, "type": "email", "reputation": 5}, headers=report
            )
            assert wrong_type.status_code == 400
            assert wrong_type.json()["error"] == "unsupported_type"
            bad_moment = await client.put(
                f"/iprepd/type/ip/{IP}",
                json={"object": IP, "type": "ip", "reputation": 5, "decayafter": "soon"},
                headers=report,
            )
            assert bad_moment.status_code == 400
            assert bad_moment.json()["error"] == "invalid_decayafter"
            far = await client.put(
                f"/iprepd/type/ip/{IP}",
                json={"object": IP, "type": "ip", "reputation": 5, "decayafter": "9999-12-31T23:59:59-01:00"},
                headers=report,
            )
            assert far.status_code == 400
            assert far.json()["error"] == "invalid_decayafter"
            for out_of_range in (-1, 101):
                answer = await client.put(
                    f"/iprepd/type/ip/{IP}",
                    json={"object": IP, "type": "ip", "reputation": out_of_range},
                    headers=report,
                )
                assert answer.status_code == 422, out_of_range
            assert await reputation(client, keys["read"], IP) is None

    asyncio.run(scenario())
