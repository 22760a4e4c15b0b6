"""``GET /v1/export``: exactly the blocked networks, as the fewest CIDRs, in every format;
ETag, 304 and cache headers; filters; errors."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest

from blocklist.exportformats import FORMATS
from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running
from tests.ipchecking.controlhelpers import Clock, bearer, make_key

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

FEED_A = "1.2.3.4\n10.20.0.0/16\n10.21.0.0/16\n2001:db8::/32\n198.51.100.7\n192.0.2.0/25\n"
FEED_B = "1.2.3.5\n192.0.2.128/25\n2001:db9::/48\n"


def two_feeds(tmp_path: Path, **overrides: object) -> Settings:
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


def networks_of(fmt: str, text: str) -> list[Net]:
    """The networks a consumer reads from an export (parsed back, for the round trip)."""
    if fmt == "json":
        return [ipaddress.ip_network(n) for n in json.loads(text)["networks"]]
    nets = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if fmt == "nginx":
            network, value = line.rstrip(";").split()
            assert value == "1"
        elif fmt == "ipset":
            words = line.split()
            if words[0] != "add":
                continue
            network = words[2]
        elif fmt == "nftables":
            if not line.startswith("add element"):
                continue
            body = line.split("{", 1)[1].rstrip(" }")
            nets += [ipaddress.ip_network(n.strip()) for n in body.split(",")]
            continue
        else:
            network = line
        nets.append(ipaddress.ip_network(network))
    return nets


def spans(nets: list[Net]) -> list[tuple[int, int, int]]:
    """Merged (version, first, last) spans covered by ``nets``."""
    out: list[tuple[int, int, int]] = []
    for net in sorted(nets, key=lambda n: (n.version, int(n[0]))):
        first, last = int(net[0]), int(net[-1])
        if out and out[-1][0] == net.version and first <= out[-1][2] + 1:
            out[-1] = (net.version, out[-1][1], max(last, out[-1][2]))
        else:
            out.append((net.version, first, last))
    return out


def expected(entries: list[str], holes: list[str] = ()) -> list[tuple[int, int, int]]:  # type: ignore[assignment]
    """Brute force on address sets: the merged spans of ``entries`` minus ``holes``."""
    covered: set[tuple[int, int]] = set()
    for entry in entries:
        net = ipaddress.ip_network(entry)
        covered |= (
            {(net.version, int(a)) for a in net} if net.num_addresses <= 1 << 16 else {(net.version, -1)}
        )
    for hole in holes:
        net = ipaddress.ip_network(hole)
        covered -= {(net.version, int(a)) for a in net}
    out: list[tuple[int, int, int]] = []
    for version, value in sorted(covered):
        if out and out[-1][0] == version and out[-1][2] + 1 == value:
            out[-1] = (version, out[-1][1], value)
        else:
            out.append((version, value, value))
    return out


def test_every_format_exports_exactly_the_blocked_networks_as_the_fewest_cidrs(tmp_path: Path) -> None:
    settings = two_feeds(tmp_path)
    admin = make_key(settings, "admin-key", "admin")
    v4_only = [line for line in (FEED_A + FEED_B).split() if ":" not in line]

    async def scenario() -> None:
        async with running(create_app(settings)) as client:
            for body in (
                {"network": "10.20.5.0/24", "action": "allow"},
                {"network": "203.0.113.0/30", "action": "block"},
            ):
                assert (
                    await client.post("/v1/overrides", json=body, headers=bearer(admin))
                ).status_code == 201
            want = expected([*v4_only, "203.0.113.0/30"], ["10.20.5.0/24"])
            for fmt in FORMATS:
                answer = await client.get("/v1/export", params={"format": fmt, "family": "4"})
                assert answer.status_code == 200, answer.text
                nets = networks_of(fmt, answer.text)
                assert spans(nets) == want, fmt
                # Fewest CIDRs: the same count as ipaddress's summary of each merged span.
                fewest = sum(
                    len(
                        list(
                            ipaddress.summarize_address_range(
                                ipaddress.IPv4Address(f), ipaddress.IPv4Address(la)
                            )
                        )
                    )
                    for _, f, la in want
                )
                assert len(nets) == fewest, fmt
            # 10.20.0.0/16 and 10.21.0.0/16 are adjacent, and the allow cut a hole in the first.
            plain = (await client.get("/v1/export", params={"format": "plain", "family": "4"})).text.split()
            assert "10.21.0.0/16" in plain
            assert "10.20.0.0/22" in plain
            assert "10.20.5.0/24" not in plain
            assert "192.0.2.0/24" in plain, "the halves of two feeds merge"
            both = (await client.get("/v1/export", params={"format": "plain"})).text.split()
            assert both[-2:] == ["2001:db8::/32", "2001:db9::/48"]
            assert [n for n in both if ":" not in n] == plain
            six = (await client.get("/v1/export", params={"format": "plain", "family": "6"})).text.split()
            assert six == ["2001:db8::/32", "2001:db9::/48"]
            # One feed: its networks only, allows still cut out, manual blocks not added.
            only_a = (
                await client.get("/v1/export", params={"format": "plain", "feed": "a", "family": "4"})
            ).text
            a_entries = [line for line in FEED_A.split() if ":" not in line]
            assert spans(networks_of("plain", only_a)) == expected(a_entries, ["10.20.5.0/24"])
            answer = await client.get("/v1/export", params={"format": "json"})
            assert answer.json()["version"] == int(answer.headers["x-blocklist-version"])

    asyncio.run(scenario())


def test_etag_names_the_data_and_a_poll_gets_304_until_it_changes(tmp_path: Path) -> None:
    clock = Clock()
    settings = two_feeds(tmp_path, cache_max_age=300)
    admin = make_key(settings, "admin-key", "admin")

    async def scenario() -> None:
        async with running(create_app(settings, clock=clock)) as client:
            params = {"format": "nginx"}
            first = await client.get("/v1/export", params=params)
            etag = first.headers["etag"]
            assert etag.startswith('"')
            assert etag.endswith('"')
            assert first.headers["cache-control"].startswith("public, max-age=")
            assert 0 < int(first.headers["cache-control"].rsplit("=", 1)[1]) <= 300
            modified = email.utils.parsedate_to_datetime(first.headers["last-modified"]).timestamp()
            assert modified <= time.time()
            again = await client.get("/v1/export", params=params, headers={"if-none-match": etag})
            assert again.status_code == 304
            assert again.content == b""
            assert again.headers["etag"] == etag
            listed = await client.get(
                "/v1/export", params=params, headers={"if-none-match": f'"x", W/{etag}'}
            )
            assert listed.status_code == 304
            since = await client.get(
                "/v1/export", params=params, headers={"if-modified-since": first.headers["last-modified"]}
            )
            assert since.status_code == 304
            other = await client.get(
                "/v1/export", params={"format": "plain"}, headers={"if-none-match": etag}
            )
            assert other.status_code == 200, "each format has its own tag"
            head = await client.head("/v1/export", params=params)
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["etag"] == etag

            created = await client.post(
                "/v1/overrides",
                json={"network": "198.51.100.7", "action": "allow", "expires_in": 60},
                headers=bearer(admin),
            )
            assert created.status_code == 201, created.text
            await asyncio.sleep(0)
            changed = await client.get("/v1/export", params=params, headers={"if-none-match": etag})
            assert changed.status_code == 200
            assert "198.51.100.7/32 1;" not in changed.text
            clock.advance(61)  # the allow expires: the address is exported again, under the first tag
            expired = await client.get("/v1/export", params=params, headers={"if-none-match": etag})
            assert expired.status_code == 304

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"format": "csv"}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"format": "plain", "family": "5"}, 422, "invalid_request"),
        ({"format": "plain", "feed": "<nope>"}, 404, "unknown_feed"),
        ({"format": "plain", "feed": ""}, 404, "unknown_feed"),
    ],
)
def test_bad_parameters_are_refused_with_a_reason(
    tmp_path: Path, params: dict[str, str], status: int, error: str
) -> None:
    async def scenario() -> None:
        async with running(create_app(two_feeds(tmp_path))) as client:
            answer = await client.get("/v1/export", params=params)
            assert answer.status_code == status, answer.text
            body: dict[str, Any] = answer.json()
            assert body["error"] == error
            assert body["detail"]
            if "feed" in params:
                assert "a, b" in body["detail"]

    asyncio.run(scenario())


def test_export_without_a_version_is_a_503(tmp_path: Path) -> None:
    settings = Settings(
        feeds=f"a=plain:{tmp_path / 'missing.txt'}", state_dir=tmp_path / "s", bootstrap=False
    )

    async def scenario() -> None:
        async with running(create_app(settings), wait_ready=False) as client:
            answer = await client.get("/v1/export", params={"format": "plain"})
            assert answer.status_code == 503
            assert answer.json()["error"] == "no_data"

    asyncio.run(scenario())


def test_export_is_documented(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(create_app(two_feeds(tmp_path))) as client:
            schema = (await client.get("/openapi.json")).json()
            operation = schema["paths"]["/v1/export"]["get"]
            formats = next(p for p in operation["parameters"] if p["name"] == "format")["schema"]["enum"]
            assert formats == list(FORMATS)
            assert {"200", "304", "404", "422", "503"} <= set(operation["responses"])

    asyncio.run(scenario())
