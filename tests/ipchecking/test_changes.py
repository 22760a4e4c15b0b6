"""``GET /v1/changes``: applied to a copy of any version, the changes give exactly the latest
one (real Spamhaus archives, every version); overrides; since = latest; refusals."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

from blocklist.settings import Settings
from blocklistupdater.archive import import_embedded, read_files
from ipchecking.app import create_app
from tests.archives import ARCHIVE_FEEDS, ArchiveModel, archive_files
from tests.changecheck import check_every_version, joined, minus, networks, spans
from tests.ipchecking.apphelpers import running
from tests.ipchecking.controlhelpers import bearer, make_key


def archive_settings(tmp_path: Path, shared_data: Path) -> tuple[Settings, ArchiveModel]:
    """Both Spamhaus archives imported into a fresh state directory; feeds = the newest files."""
    files = {feed: archive_files(shared_data, feed) for feed in ARCHIVE_FEEDS}
    settings = Settings(
        feeds=",".join(f"{feed}=spamhaus:{paths[-1]}" for feed, paths in files.items()),
        state_dir=tmp_path / "state",
        bootstrap=False,
        history_retention="0",
    )
    for feed, paths in files.items():
        read, _ = read_files(settings, paths, settings.feeds[0].format, None)
        import_embedded(settings, feed, read)
    return settings, ArchiveModel.load(files)


def test_changes_since_every_archived_version_give_the_latest(tmp_path: Path, shared_data: Path) -> None:
    settings, model = archive_settings(tmp_path, shared_data)

    async def check() -> None:
        async with running(create_app(settings)) as client:
            latest = await check_every_version(client, model)
            ahead = await client.get("/v1/changes", params={"since": latest + 1})
            assert (ahead.status_code, ahead.json()["error"], ahead.json()["latest"]) == (
                409,
                "ahead",
                latest,
            )
            for bad in ("-1", "x", ""):
                refused = await client.get("/v1/changes", params={"since": bad})
                assert refused.status_code == 422, bad
            assert (await client.get("/v1/changes")).status_code == 422

    asyncio.run(check())


def _feed_settings(tmp_path: Path) -> Settings:
    (tmp_path / "a.txt").write_text("10.0.0.0/24\n198.51.100.7\n2001:db8::/48\n")
    return Settings(
        feeds=f"a=plain:{tmp_path / 'a.txt'}",
        state_dir=tmp_path / "state",
        bootstrap=False,
        retry_attempts=1,
    )


def test_changes_list_the_active_overrides_and_refuse_what_history_lacks(tmp_path: Path) -> None:
    settings = _feed_settings(tmp_path)
    admin = make_key(settings, "admin-key", "admin")

    async def check() -> None:
        app = create_app(settings)
        async with running(app) as client:
            first: dict[str, Any] = (await client.get("/v1/changes", params={"since": 1})).json()
            assert first == {
                "from": 1,
                "to": 1,
                "added": {"ipv4": [], "ipv6": []},
                "removed": {"ipv4": [], "ipv6": []},
                "overrides": {"block": {"ipv4": [], "ipv6": []}, "allow": {"ipv4": [], "ipv6": []}},
            }
            for network, action in (("10.0.0.128/25", "allow"), ("203.0.113.0/25", "block")):
                created = await client.post(
                    "/v1/overrides", json={"network": network, "action": action}, headers=bearer(admin)
                )
                assert created.status_code == 201, created.text
            (tmp_path / "a.txt").write_text("10.0.0.0/24\n10.0.1.0/24\n2001:db8::/48\n")
            await app.app.state.runtime.updater.sync_once()
            body = (await client.get("/v1/changes", params={"since": 1})).json()
            assert (body["from"], body["to"]) == (1, 2)
            assert body["added"] == {"ipv4": ["10.0.1.0/24"], "ipv6": []}
            assert body["removed"] == {"ipv4": ["198.51.100.7/32"], "ipv6": []}
            assert body["overrides"] == {
                "block": {"ipv4": ["203.0.113.0/25"], "ipv6": []},
                "allow": {"ipv4": ["10.0.0.128/25"], "ipv6": []},
            }
            # The copy a consumer keeps, with the overrides applied, is what the export serves.
            feeds = spans(map(ipaddress.ip_network, ["10.0.0.0/24", "2001:db8::/48", "10.0.1.0/24"]))
            allowed, blocked = networks(body["overrides"]["allow"]), networks(body["overrides"]["block"])
            copy = joined([*minus(feeds, spans(allowed)), *spans(blocked)])
            exported = (await client.get("/v1/export", params={"format": "plain"})).text.split()
            assert copy == spans(map(ipaddress.ip_network, exported))
            unknown = await client.get("/v1/changes", params={"since": 0})
            assert (unknown.status_code, unknown.json()["error"], unknown.json()["oldest"]) == (
                410,
                "purged",
                1,
            )

    asyncio.run(check())
