"""The CrowdSec bouncer API in embedded mode: startup lists exactly what the export serves,
later pulls exactly the changes per key, HEAD never advances, filters, live queries, keys."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from pathlib import Path
from typing import Any

import httpx

from blocklist.crowdsec import DURATION_MARGIN
from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running
from tests.ipchecking.controlhelpers import bearer, make_key

FEED_A = "1.2.3.4\n10.20.0.0/16\n10.21.0.0/16\n2001:db8::/32\n198.51.100.7\n"
FEED_B = "1.2.3.6\n192.0.2.128/25\n"
STREAM = "/crowdsec/v1/decisions/stream"
ALL_SCOPES = {"scopes": "ip,range"}


def feeds(tmp_path: Path, **overrides: object) -> Settings:
    (tmp_path / "a.txt").write_text(FEED_A)
    (tmp_path / "b.txt").write_text(FEED_B)
    values: dict[str, object] = {
        "feeds": f"a=plain:{tmp_path / 'a.txt'},b=plain:{tmp_path / 'b.txt'}",
        "state_dir": tmp_path / "state",
        "bootstrap": False,
        "retry_attempts": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def values(decisions: list[dict[str, Any]] | None) -> set[str]:
    return {d["value"] for d in decisions or []}


def as_network(value: str) -> str:
    return str(ipaddress.ip_network(value))


async def pull(client: httpx.AsyncClient, key: str, **params: str) -> dict[str, Any]:
    answer = await client.get(STREAM, params={**ALL_SCOPES, **params}, headers={"X-Api-Key": key})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_startup_then_changes_per_key(tmp_path: Path) -> None:
    settings = feeds(tmp_path)
    admin = make_key(settings, "admin", "admin")
    one, two = make_key(settings, "edge-1", "bouncer"), make_key(settings, "edge-2", "bouncer")

    async def check() -> None:
        app = create_app(settings)
        async with running(app) as client:
            start = await pull(client, one, startup="true")
            exported = (await client.get("/v1/export", params={"format": "plain"})).text.split()
            assert {as_network(v) for v in values(start["new"])} == set(exported)
            assert start["deleted"] is None
            by_value = {d["value"]: d for d in start["new"]}
            assert by_value["1.2.3.4"] | {"id": 0} == {
                "id": 0,
                "origin": "lists",
                "type": "ban",
                "scope": "Ip",
                "value": "1.2.3.4",
                "duration": by_value["1.2.3.4"]["duration"],
                "scenario": "a",
                "simulated": False,
            }
            # 10.20/16 + 10.21/16 = 10.20/15.
            assert by_value["10.20.0.0/15"]["scope"] == "Range"
            hours = int(re.fullmatch(r"(\d+)h(\d+)m(\d+)s", by_value["10.20.0.0/15"]["duration"])[1])  # type: ignore[index]
            assert 24 <= hours <= 24 + DURATION_MARGIN // 3600
            assert len({d["id"] for d in start["new"]}) == len(start["new"])
            assert await pull(client, one) == {"new": None, "deleted": None}

            # A new version and two overrides: exactly the difference, once per key.
            for network, action in (("10.20.128.0/17", "allow"), ("203.0.113.0/24", "block")):
                created = await client.post(
                    "/v1/overrides",
                    json={"network": network, "action": action, "reason": "seen brute-forcing"},
                    headers=bearer(admin),
                )
                assert created.status_code == 201, created.text
            (tmp_path / "a.txt").write_text(FEED_A.replace("198.51.100.7\n", "198.51.100.9\n"))
            await app.app.state.runtime.updater.sync_once()
            head = await client.head(STREAM, params=ALL_SCOPES, headers={"X-Api-Key": one})
            assert head.status_code == 200
            changed = await pull(client, one)
            assert values(changed["new"]) == {
                "10.20.0.0/17",
                "10.21.0.0/16",
                "203.0.113.0/24",
                "198.51.100.9",
            }
            assert values(changed["deleted"]) == {"10.20.0.0/15", "198.51.100.7"}
            manual = next(d for d in changed["new"] if d["value"] == "203.0.113.0/24")
            assert (manual["origin"], manual["scenario"]) == ("cscli", "seen brute-forcing")
            assert await pull(client, one) == {"new": None, "deleted": None}
            # The other key never pulled: its first pull is everything now.
            other = await pull(client, two)
            now_exported = (await client.get("/v1/export", params={"format": "plain"})).text.split()
            assert {as_network(v) for v in values(other["new"])} == set(now_exported)

    asyncio.run(check())


def test_filters_and_live_queries(tmp_path: Path) -> None:
    settings = feeds(tmp_path)
    key = make_key(settings, "edge", "bouncer")

    async def check() -> None:
        async with running(create_app(settings)) as client:
            only_ips = await client.get(STREAM, params={"startup": "true"}, headers={"X-Api-Key": key})
            assert {d["scope"] for d in only_ips.json()["new"]} == {"Ip"}  # CrowdSec's default: ip
            ranges = await pull(client, key, startup="true", scopes="Range")
            assert {d["scope"] for d in ranges["new"]} == {"Range"}
            only_b = await pull(client, key, startup="true", scenarios_containing="b")
            assert values(only_b["new"]) == {"1.2.3.6", "192.0.2.128/25"}
            not_b = await pull(client, key, startup="true", scenarios_not_containing="b")
            assert "1.2.3.6" not in values(not_b["new"])
            assert (await pull(client, key, startup="true", origins="cscli"))["new"] is None

            def ask(**params: str) -> Any:
                return client.get("/crowdsec/v1/decisions", params=params, headers={"X-Api-Key": key})

            hit = (await ask(ip="10.21.3.4")).json()
            assert [d["value"] for d in hit] == ["10.20.0.0/15"]
            assert (await ask(ip="10.22.0.1")).json() is None
            assert [d["value"] for d in (await ask(range="10.20.4.0/24")).json()] == ["10.20.0.0/15"]
            assert (await ask(range="10.0.0.0/8")).json() is None  # no decision holds all of it
            inside = (await ask(range="10.0.0.0/8", contains="false")).json()
            assert [d["value"] for d in inside] == ["10.20.0.0/15"]
            assert [d["value"] for d in (await ask(scope="ip", value="2001:db8::1")).json()] == [
                "2001:db8::/32"
            ]
            bad = await ask(ip="10.1.1")
            assert (bad.status_code, bad.json()["error"]) == (422, "invalid_address")

    asyncio.run(check())


def test_keys_bouncer_scope_opens_only_the_crowdsec_api(tmp_path: Path) -> None:
    settings = feeds(tmp_path, protect="status")
    bouncer, read = make_key(settings, "edge", "bouncer"), make_key(settings, "reader", "read")

    async def check() -> None:
        async with running(create_app(settings)) as client:
            for headers in ({}, {"X-Api-Key": "not-a-key"}):
                refused = await client.get(STREAM, headers=headers)
                assert refused.status_code == 403
                assert refused.json()["message"]
            assert (await client.get(STREAM, headers={"X-Api-Key": read})).status_code == 200
            assert (await client.get(STREAM, headers={"X-Api-Key": bouncer})).status_code == 200
            assert (await client.get("/status", headers={"X-Api-Key": bouncer})).status_code == 401
            assert (await client.get("/status", headers={"X-Api-Key": read})).status_code == 200

    asyncio.run(check())
