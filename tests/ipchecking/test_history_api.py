"""The /v1 explain and history API in embedded mode: labels across feeds, listed_since,
intervals after changes, bad input, and retention purging (410, nothing left on disk)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from pathlib import Path

from blocklist.history import address_keys, network_key, parse_moment
from blocklist.settings import Settings
from blocklistupdater.archive import import_embedded, read_files
from ipchecking.app import create_app
from tests.archives import ArchiveModel, archive_files
from tests.ipchecking.apphelpers import running

HOSTILE = '<script>alert(1)</script> "onmouseover=alert(2)'


def two_feeds(tmp_path: Path, **overrides: object) -> Settings:
    (tmp_path / "a.txt").write_text(f"10.0.0.0/8 # the whole ten\n10.1.2.0/24 # {HOSTILE}\n192.0.2.9\n")
    (tmp_path / "b.txt").write_text("; Spamhaus DROP List 2026/01/01\n10.1.0.0/16 ; SBL42\n")
    values: dict[str, object] = {
        "feeds": f"a=plain:{tmp_path / 'a.txt'},b=spamhaus:{tmp_path / 'b.txt'}",
        "state_dir": tmp_path / "state",
        "bootstrap": False,
        "retry_attempts": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_explain_names_every_feed_entry_with_its_label(tmp_path: Path) -> None:
    async def check() -> None:
        app = create_app(two_feeds(tmp_path))
        async with running(app) as client:
            response = await client.get("/v1/ip/10.1.2.3")
            assert response.status_code == 200
            body = response.json()
            assert body["blocked"] is True
            assert (await client.get("/check_ip/10.1.2.3")).json() == {"blocked": True}
            got = [(m["feed"], m["network"], m["label"], m["score"]) for m in body["matches"]]
            assert got == [
                ("a", "10.1.2.0/24", HOSTILE, 0),
                ("a", "10.0.0.0/8", "the whole ten", 0),
                ("b", "10.1.0.0/16", "SBL42", 0),
            ]
            assert {m["listed_since"] for m in body["matches"]} == {body["built_at"]}
            assert body["version"] == int(response.headers.get("x-blocklist-version", body["version"]))
            assert (body["overrides"], body["reputation"]) == ([], None)
            # Labels are data: a JSON string, never markup.
            assert response.headers["content-type"] == "application/json"
            assert "<script>" not in response.text.replace(HOSTILE.replace('"', '\\"'), "")
            unlisted = (await client.get("/v1/ip/192.0.2.10")).json()
            assert (unlisted["blocked"], unlisted["matches"]) == (False, [])
            mapped = (await client.get("/v1/ip/::ffff:192.0.2.9")).json()
            assert (mapped["ip"], mapped["blocked"]) == ("192.0.2.9", True)

    asyncio.run(check())


def test_bad_addresses_and_moments_get_a_reason(tmp_path: Path) -> None:
    async def check() -> None:
        async with running(create_app(two_feeds(tmp_path))) as client:
            for path in ("/v1/ip/10.1.2", "/v1/ip/example.com", "/v1/ip/300.1.2.3/history"):
                response = await client.get(path)
                assert response.status_code == 422, path
                assert response.json()["error"] == "invalid_address"
            for at in ("yesterday", "2020-06-01T00:00:00", "2020-02-30", "1590969600", ""):
                response = await client.get("/v1/ip/10.1.2.3", params={"at": at})
                assert (response.status_code, response.json()["error"]) == (422, "invalid_at"), at
            response = await client.get("/v1/versions", params={"limit": 0})
            assert (response.status_code, response.json()["error"]) == (422, "invalid_request")
            assert (await client.get("/v1/versions/abc")).status_code == 422

    asyncio.run(check())


def test_changes_close_intervals_and_listed_since_survives_them(tmp_path: Path) -> None:
    settings = two_feeds(tmp_path)

    async def check() -> None:
        app = create_app(settings)
        async with running(app) as client:
            first = (await client.get("/v1/ip/10.1.2.3")).json()
            (tmp_path / "a.txt").write_text(
                "10.0.0.0/8 # the whole ten, renamed\n198.51.100.0/24\n192.0.2.200\n"
            )
            updater = app.app.state.runtime.updater
            await updater.sync_once()
            second = (await client.get("/v1/ip/10.1.2.3")).json()
            assert second["version"] > first["version"]
            got = {(m["feed"], m["network"]): (m["label"], m["listed_since"]) for m in second["matches"]}
            # A new label starts a new interval; listed_since spans both (no gap).
            assert got == {
                ("a", "10.0.0.0/8"): ("the whole ten, renamed", first["built_at"]),
                ("b", "10.1.0.0/16"): ("SBL42", first["built_at"]),
            }
            history = (await client.get("/v1/ip/10.1.2.3/history")).json()
            rows = [(i["feed"], i["network"], i["label"], i["from"], i["to"]) for i in history["intervals"]]
            assert rows[0] == ("a", "10.0.0.0/8", "the whole ten, renamed", second["built_at"], None)
            assert ("a", "10.1.2.0/24", HOSTILE, first["built_at"], second["built_at"]) in rows
            assert ("a", "10.0.0.0/8", "the whole ten", first["built_at"], second["built_at"]) in rows
            assert history["total"] == 4
            page = (await client.get("/v1/ip/10.1.2.3/history", params={"limit": 3})).json()
            assert (len(page["intervals"]), page["next_offset"]) == (3, 3)
            # The answer at the first version is still the first answer.
            then = (await client.get("/v1/ip/10.1.2.3", params={"at": first["built_at"]})).json()
            assert (then["version"], then["matches"]) == (first["version"], first["matches"])
            diff = (await client.get(f"/v1/versions/{first['version']}/diff/{second['version']}")).json()
            assert diff["changes"] == [
                {"feed": "a", "network": "192.0.2.200/32", "change": "added"},
                {"feed": "a", "network": "198.51.100.0/24", "change": "added"},
                {"feed": "a", "network": "10.1.2.0/24", "change": "removed"},
                {"feed": "a", "network": "192.0.2.9/32", "change": "removed"},
            ]

    asyncio.run(check())


def test_retention_purges_old_history_everywhere_and_answers_410(tmp_path: Path, shared_data: Path) -> None:
    paths = archive_files(shared_data, "drop")
    keep_all = Settings(
        feeds=f"drop=spamhaus:{paths[-1]}",
        state_dir=tmp_path / "state",
        bootstrap=False,
        history_retention="0",
    )
    files, _ = read_files(keep_all, paths, keep_all.feeds[0].format, None)
    import_embedded(keep_all, "drop", files)
    model = ArchiveModel.load({"drop": paths})
    horizon = parse_moment("2021-01-01")
    # A network every 2020 file lists until it is dropped before the horizon: gone afterwards.
    in_force = model.contents["drop"][16]  # 2020-12-28, in force at the horizon
    gone = sorted(
        {n for c in model.contents["drop"][:16] for n in c} - set(in_force) - set(model.contents["drop"][17]),
        key=str,
    )
    assert gone
    purged = gone[0]
    state = tmp_path / "state"
    assert any(_holds(p, purged) for p in state.iterdir())
    days = (time.time() - horizon) / 86400
    settings = keep_all.model_copy(update={"history_retention": {"": days * 86400}})

    async def check() -> None:
        async with running(create_app(settings)) as client:
            for _ in range(200):
                listing = (await client.get("/v1/versions")).json()
                if listing["horizon"]:
                    break
                await asyncio.sleep(0.05)
            assert parse_moment(listing["horizon"]) >= horizon - 60
            response = await client.get(f"/v1/ip/{purged.network_address}", params={"at": "2020-06-01"})
            assert response.status_code == 410
            assert response.json()["error"] == "purged"
            assert 0 <= parse_moment(response.json()["horizon"]) - parse_moment(listing["horizon"]) < 60
            assert (await client.get("/v1/versions/1")).status_code == 404
            assert (await client.get("/v1/versions/17")).status_code == 200  # in force at the horizon
            purged_since = await client.get("/v1/changes", params={"since": 16})
            assert (purged_since.status_code, purged_since.json()["oldest"]) == (410, 17)
            assert (await client.get("/v1/changes", params={"since": 17})).status_code == 200
            history = (await client.get(f"/v1/ip/{purged.network_address}/history")).json()
            assert history["intervals"] == []
            for address in (str(n.network_address) for n in list(in_force)[:20]):
                body = (await client.get(f"/v1/ip/{address}", params={"at": "2021-01-02"})).json()
                expected = model.listed(address, parse_moment("2021-01-02"))
                assert {m["network"] for m in body["matches"]} == expected.get("drop", set())

    asyncio.run(check())
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "history.sqlite" for p in files)
    for path in files:
        assert not _holds(path, purged), path


def _holds(path: Path, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """True if the file's raw bytes hold the network as text or as a history key."""
    data = path.read_bytes()
    family = 4 if network.version == 4 else 6
    key = network_key(family, network.prefixlen, int(network.network_address))
    assert key in address_keys(family, int(network.network_address))
    return str(network).encode() in data or key in data
