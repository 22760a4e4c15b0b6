"""Importing archives into the embedded history: dating, order, repeats, guards, crashes,
and answers at many moments equal to an independent model of the 35 real Spamhaus files."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocklist.history import content_of, iso_moment
from blocklist.historysqlite import SqliteHistory
from blocklist.settings import Settings
from blocklistupdater.archive import file_date, import_embedded, read_files
from blocklistupdater.historyrecorder import ImportResult, build_live
from ipchecking.app import create_app
from tests.archives import ARCHIVE_FEEDS, ArchiveModel, archive_files, check_point_in_time
from tests.ipchecking.apphelpers import running


def archive_settings(tmp_path: Path, shared_data: Path, **overrides: object) -> Settings:
    """Both archive feeds configured from their newest file; history kept for ever."""
    sources = ",".join(f"{feed}=spamhaus:{archive_files(shared_data, feed)[-1]}" for feed in ARCHIVE_FEEDS)
    values: dict[str, object] = {
        "feeds": sources,
        "state_dir": tmp_path / "state",
        "bootstrap": False,
        "history_retention": "0",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def import_paths(settings: Settings, feed: str, paths: list[Path]) -> list[ImportResult]:
    files, unreadable = read_files(settings, paths, settings.feeds[0].format, None)
    assert not unreadable
    return import_embedded(settings, feed, files)


def stored(settings: Settings) -> tuple[list[tuple[object, ...]], ...]:
    """The history's records, open members and bounds, as sorted rows."""
    with sqlite3.connect(SqliteHistory(settings.state_dir).path) as con:
        return tuple(
            sorted(con.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("records", "opens", "bounds")
        )


def test_a_file_is_dated_by_at_then_its_header_then_its_name(tmp_path: Path) -> None:
    path = tmp_path / "list-2019-05-04.txt"
    assert (
        iso_moment(file_date(path, b"; Spamhaus DROP List 2018/02/01 - (c)\n", None))
        == "2018-02-01T00:00:00Z"
    )
    assert iso_moment(file_date(path, b"1.2.3.0/24 ; SBL1\n", None)) == "2019-05-04T00:00:00Z"
    assert iso_moment(file_date(path, b"; x 2018/02/01\n", "2017-01-01T12:00:00Z")) == "2017-01-01T12:00:00Z"
    with pytest.raises(ValueError, match="no date"):
        file_date(tmp_path / "list.txt", b"1.2.3.0/24\n", None)


def test_point_in_time_answers_match_the_archive_at_many_moments(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    files = {feed: archive_files(shared_data, feed) for feed in ARCHIVE_FEEDS}
    assert sum(map(len, files.values())) == 35
    for feed, paths in files.items():
        results = import_paths(settings, feed, paths)
        assert [r.outcome for r in results] == ["recorded"] * len(paths)
    model = ArchiveModel.load(files)
    rng = random.Random(12)
    addresses = model.sample_addresses(rng, 25)
    moments = model.sample_moments()

    async def check() -> None:
        async with running(create_app(settings)) as client:
            first = min(min(m) for m in model.moments.values())
            before = (await client.get(f"/v1/ip/{addresses[0]}", params={"at": iso_moment(first - 1)})).json()
            assert (before["blocked"], before["version"], before["matches"]) == (False, None, [])
            await check_point_in_time(client, model, addresses, rng.sample(moments, 40))

    run(check())


def run(coro: object) -> None:
    import asyncio

    asyncio.run(coro)  # type: ignore[arg-type]


def test_imports_in_any_order_and_repeated_store_the_same_history(tmp_path: Path, shared_data: Path) -> None:
    paths = archive_files(shared_data, "drop")
    at_once = archive_settings(tmp_path / "a", shared_data)
    import_paths(at_once, "drop", paths)
    split = archive_settings(tmp_path / "b", shared_data)
    import_paths(split, "drop", paths[9:])
    import_paths(split, "drop", paths[::-1][9:])  # the older half, newest first
    assert stored(split) == stored(at_once)
    again = import_paths(at_once, "drop", paths[3:7])
    assert [r.outcome for r in again] == ["unchanged"] * 4
    assert stored(split) == stored(at_once)


def test_refused_files_are_reported_and_skipped(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    paths = archive_files(shared_data, "drop")
    tiny = tmp_path / "drop-2020-02-01.txt"
    tiny.write_text("; Spamhaus DROP List 2020/02/01\n1.10.16.0/20 ; SBL256894\n")
    broad = tmp_path / "drop-2020-02-02.txt"
    broad.write_text(
        "; Spamhaus DROP List 2020/02/02\n" + paths[0].read_text().split("\n", 1)[1] + "0.0.0.0/1 ; SBL0\n"
    )
    undated = tmp_path / "drop.txt"
    undated.write_text("1.10.16.0/20 ; SBL256894\n")
    files, unreadable = read_files(
        settings, [*paths[:3], tiny, broad, undated], settings.feeds[0].format, None
    )
    assert [u.name for u in unreadable] == [str(undated)]
    results = {Path(r.name).name: r for r in import_embedded(settings, "drop", files)}
    assert results["drop-2020-02-01.txt"].outcome == "refused"
    assert "shr" in results["drop-2020-02-01.txt"].detail
    assert results["drop-2020-02-02.txt"].outcome == "refused"
    assert [results[p.name].outcome for p in paths[:3]] == ["recorded"] * 3


def test_the_command_reports_each_file_and_fails_only_on_refusals(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    paths = archive_files(shared_data, "edrop")[:3]
    proc = import_command(settings, "edrop", [*map(str, paths), str(tmp_path / "missing-2020-01-01.txt")])
    assert proc.returncode == 1
    lines = proc.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["refused", "recorded", "recorded", "recorded"]
    assert "as version 1" in lines[1]
    again = import_command(settings, "edrop", list(map(str, paths)))
    assert again.returncode == 0
    assert [line.split()[0] for line in again.stdout.decode().splitlines()] == ["unchanged"] * 3


def import_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKLIST_", "REDIS_"))}
    env |= {
        "BLOCKLIST_FEEDS": ",".join(f"{f.name}={f.format}:{f.source}" for f in settings.feeds),
        "BLOCKLIST_STATE_DIR": str(settings.state_dir),
        "BLOCKLIST_HISTORY_RETENTION": "0",
        "BLOCKLIST_BOOTSTRAP": "false",
    }
    return env


def import_command(settings: Settings, feed: str, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "blocklistupdater", "import", "--feed", feed, *args],
        env=import_env(settings),
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_a_kill_at_any_moment_leaves_a_readable_history(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    paths = [str(p) for feed in ARCHIVE_FEEDS for p in archive_files(shared_data, feed)]
    store = SqliteHistory(settings.state_dir)
    rng = random.Random(5)
    for attempt in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-m", "blocklistupdater", "import", "--feed", "drop", *paths[:18]],
            env=import_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.5) if attempt else 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if store.path.exists():
            with sqlite3.connect(store.path) as con:
                assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            with store.reading() as reader:
                # One transaction per command: nothing or all of it.
                assert len(reader.catalog().versions) in {0, 18}
    assert import_command(settings, "drop", paths[:18]).returncode == 0
    with store.reading() as reader:
        assert len(reader.catalog().versions) == 18


def test_versions_and_diffs_list_what_changed(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    paths = archive_files(shared_data, "drop")[:3]
    import_paths(settings, "drop", paths)
    model = ArchiveModel.load({"drop": paths})
    first, second = model.contents["drop"][0], model.contents["drop"][2]
    added = sorted(str(n) for n in set(second) - set(first))
    removed = sorted(str(n) for n in set(first) - set(second))

    async def check() -> None:
        async with running(create_app(settings)) as client:
            listing = (await client.get("/v1/versions", params={"limit": 2})).json()
            numbers = [v["number"] for v in listing["versions"]]
            assert listing["total"] >= 3
            assert listing["next_offset"] == 2
            one = (await client.get("/v1/versions/1")).json()
            assert (one["kind"], one["at"], one["feeds"]["drop"]) == (
                "import",
                "2020-01-21T00:00:00Z",
                len(first),
            )
            body = (await client.get("/v1/versions/1/diff/3", params={"limit": 10_000})).json()
            got_added = sorted(c["network"] for c in body["changes"] if c["change"] == "added")
            got_removed = sorted(c["network"] for c in body["changes"] if c["change"] == "removed")
            assert (got_added, got_removed) == (added, removed)
            assert body["summary"]["drop"] == {"added": len(added), "removed": len(removed)}
            assert (await client.get("/v1/versions/999")).status_code == 404
            assert (await client.get("/v1/versions/1/diff/999")).json()["error"] == "unknown_version"
            assert numbers == sorted(numbers, reverse=True)

    run(check())


def test_files_dated_after_the_first_sync_are_refused(tmp_path: Path, shared_data: Path) -> None:
    settings = archive_settings(tmp_path, shared_data)
    paths = archive_files(shared_data, "drop")
    files, _ = read_files(settings, paths[:6], settings.feeds[0].format, None)
    store = SqliteHistory(settings.state_dir)
    with store.writing() as reader:
        content = content_of(files[3].parsed, min_score=0, sha256=files[3].sha256, source="sync")
        _, change = build_live(
            reader, number=1, at=files[3].at + 3600, kind="sync", feeds={"drop": content}, recorded_at=0.0
        )
        reader.apply(change)
    outcomes = {Path(r.name).name: (r.outcome, r.detail) for r in import_embedded(settings, "drop", files)}
    assert [outcomes[p.name][0] for p in paths[:4]] == ["recorded"] * 4
    for late in paths[4:6]:
        assert outcomes[late.name] == ("refused", "not older than the first synced version of drop")
