"""Embedded runtime: several workers sharing one state directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from blocklist.addresses import parse_address
from ipchecking.embedded import EmbeddedRuntime
from ipchecking.holder import VersionHolder
from tests.ipchecking.apphelpers import settings_for


def blocked(holder: VersionHolder, address: str) -> bool:
    version = holder.version
    assert version is not None
    return version.index.contains(*parse_address(address))


async def until(predicate: object, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_one_worker_runs_the_updater_and_the_other_follows(tmp_path: Path) -> None:
    """Only the lock holder syncs; the other loads what it publishes, and
    takes the updater over when the holder stops."""
    settings = settings_for(tmp_path)

    async def scenario() -> None:
        first_holder, second_holder = VersionHolder(), VersionHolder()
        first = EmbeddedRuntime(settings, first_holder, follow_interval=0.05)
        second = EmbeddedRuntime(settings, second_holder, follow_interval=0.05)
        await first.start()
        await until(lambda: first_holder.version is not None)
        await second.start()
        try:
            await until(lambda: second_holder.version is not None)
            assert first.is_updater
            assert not second.is_updater
            assert second.status()["updater"] == "another worker"
            # The updater worker shares its feed status through the state dir.
            await until(lambda: second.status()["feeds"].get("local", {}).get("entries") == 4)

            (tmp_path / "feed.txt").write_text("# emptied\n")
            assert first.updater is not None
            assert await first.updater.sync_feed("local") == "refused"
            await until(lambda: second.status()["feeds"]["local"]["refusals"] == 1)
            assert "no entries" in second.status()["feeds"]["local"]["last_error"]

            (tmp_path / "feed.txt").write_text("9.9.9.9\n1.2.3.4\n10.20.0.0/16\n2001:db8::/32\n")
            assert first.updater is not None
            assert await first.updater.sync_feed("local") == "updated"
            await until(lambda: second_holder.version is not None and second_holder.version.number == 2)
            assert blocked(second_holder, "9.9.9.9")
            assert not blocked(second_holder, "198.51.100.7")

            await first.stop()
            await until(lambda: second.is_updater)
            (tmp_path / "feed.txt").write_text("8.8.4.4\n1.2.3.4\n10.20.0.0/16\n2001:db8::/32\n")
            assert second.updater is not None
            # The new updater's first scheduled sync may have read the new file
            # already (a loaded machine): then this one finds nothing new.
            assert await second.updater.sync_feed("local") in {"updated", "not_modified"}
            assert second_holder.version is not None
            assert second_holder.version.number == 3
            assert blocked(second_holder, "8.8.4.4")
        finally:
            await second.stop()
            await first.stop()

    asyncio.run(scenario())


def test_stop_releases_everything_and_can_be_called_twice(tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = EmbeddedRuntime(settings_for(tmp_path), VersionHolder())
        await runtime.start()
        await runtime.stop()
        await runtime.stop()
        assert not runtime.is_updater

    asyncio.run(scenario())


def test_new_version_is_served_even_when_it_cannot_be_written(tmp_path: Path) -> None:
    """A full disk or read-only state dir costs the restart shortcut, not fresh data."""
    settings = settings_for(tmp_path)

    async def scenario() -> None:
        holder = VersionHolder()
        runtime = EmbeddedRuntime(settings, holder, follow_interval=0.05)
        settings.state_dir.mkdir(parents=True)
        (settings.state_dir / "version.bin").mkdir()  # a directory: every write fails
        await runtime.start()
        try:
            await until(lambda: holder.version is not None)
            assert blocked(holder, "1.2.3.4")
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_stored_bundled_version_is_not_served_once_bootstrap_is_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        unreachable = httpx.MockTransport(lambda request: httpx.Response(503))
        with_bootstrap = settings_for(tmp_path, feeds="ipsum", bootstrap=True, retry_attempts=1)
        holder = VersionHolder()
        runtime = EmbeddedRuntime(with_bootstrap, holder, transport=unreachable)
        await runtime.start()
        await until(lambda: holder.version is not None)
        await runtime.stop()
        assert holder.version is not None
        assert holder.version.bootstrap

        without = settings_for(tmp_path, feeds="ipsum", bootstrap=False, retry_attempts=1)
        holder = VersionHolder()
        runtime = EmbeddedRuntime(without, holder, transport=unreachable)
        await runtime.start()
        try:
            assert holder.version is None
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_unusable_state_dir_still_serves_synced_data(tmp_path: Path) -> None:
    """The state dir is a restart shortcut; without it the service still works."""
    (tmp_path / "not-a-dir").write_text("a file where the state dir should be")
    settings = settings_for(tmp_path, state_dir=tmp_path / "not-a-dir" / "state")

    async def scenario() -> None:
        holder = VersionHolder()
        runtime = EmbeddedRuntime(settings, holder, follow_interval=0.05)
        await runtime.start()
        try:
            await until(lambda: holder.version is not None)
            assert runtime.is_updater
            assert blocked(holder, "1.2.3.4")
        finally:
            await runtime.stop()

    asyncio.run(scenario())
