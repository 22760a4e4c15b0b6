"""Updater: the fetch -> parse -> check -> compile -> publish pipeline, its
refusals and failures, persistence in the state dir and the bundled bootstrap."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from blocklist.bootstrap import BOOTSTRAP_DATE, bootstrap_source
from blocklist.settings import PRESETS
from blocklist.snapshot import Version
from blocklistupdater.statestore import StateStore
from blocklistupdater.updater import Outcome, is_stale
from tests.blocklistupdater.support import (
    DROP_URL,
    IPSUM_URL,
    SMALL_IPSUM_BYTES,
    Clock,
    FeedServer,
    Published,
    failing_client,
    feeds_of,
    gzipped,
    ipsum_text,
    listed,
    make_settings,
    ok,
    open_updater,
    run,
    status,
    streamed,
)

TWO_FEEDS = f"ipsum=ipsum:{IPSUM_URL},drop=spamhaus:{DROP_URL}"
HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Service temporarily unavailable</title></head>
<body>
<h1>We'll be back soon</h1>
<p>Our feed is being updated.</p>
<p>Please retry later.</p>
</body></html>
"""


@pytest.fixture(scope="module")
def real_ipsum(shared_data: Path) -> bytes:
    return (shared_data / "ipsum" / "ipsum-2026-08-22.txt").read_bytes()


@pytest.fixture(scope="module")
def real_drop(shared_data: Path) -> bytes:
    return (shared_data / "spamhaus" / "drop" / "drop-2025-01-17.txt").read_bytes()


@pytest.fixture
def server() -> FeedServer:
    return FeedServer()


def syncs_total(feed: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("blocklist_feed_syncs_total", {"feed": feed, "outcome": outcome})
    return value or 0.0


# --- a good feed ----------------------------------------------------------------


def test_first_sync_publishes_version_1_with_feed_info(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    published = Published()
    server.script(
        IPSUM_URL, ok(SMALL_IPSUM_BYTES, ETag='"v1"', Last_Modified="Sat, 22 Aug 2026 01:00:29 GMT")
    )

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published, clock=clock) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}
            assert updater.current is published.versions[-1]
            st = updater.feeds["ipsum"]
            assert st.last_outcome is Outcome.UPDATED
            assert st.last_success == clock.now
            assert st.last_error is None
            assert st.consecutive_failures == 0

    run(scenario())
    assert published.numbers == [1]
    version = published.versions[0]
    assert not version.bootstrap
    assert version.built_at == clock.now
    (info,) = version.feeds
    assert info.name == "ipsum"
    assert info.source == IPSUM_URL
    assert info.format == "ipsum"
    assert (info.entries, info.v4_entries, info.v6_entries, info.malformed) == (10, 10, 0, 0)
    assert info.etag == '"v1"'
    assert info.last_modified == "Sat, 22 Aug 2026 01:00:29 GMT"
    assert info.sha256 == hashlib.sha256(SMALL_IPSUM_BYTES).hexdigest()
    assert info.fetched_at == clock.now
    assert listed(version, "192.0.2.1")
    assert listed(version, "192.0.2.10")
    assert not listed(version, "192.0.2.11")
    assert feeds_of(version, "192.0.2.7") == ("ipsum",)


def test_ipsum_counts_become_scores(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()

    run(scenario())
    index = published.versions[0].index
    match = index.lookup(4, int.from_bytes(bytes([192, 0, 2, 7]), "big"))
    assert match is not None
    assert match.score == 7


def test_min_score_drops_low_scored_entries(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, min_score=5)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()

    run(scenario())
    version = published.versions[0]
    assert not listed(version, "192.0.2.4")
    assert listed(version, "192.0.2.5")


def test_second_sync_answering_304_publishes_nothing(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES, ETag='"v1"'), status(304))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published, clock=clock) as updater:
            await updater.sync_once()
            clock.advance(3600)
            assert await updater.sync_once() == {"ipsum": Outcome.NOT_MODIFIED}
            st = updater.feeds["ipsum"]
            assert st.last_outcome is Outcome.NOT_MODIFIED
            assert st.last_success == clock.now
            assert updater.current is published.versions[0]

    run(scenario())
    assert published.numbers == [1]
    assert server.requests[1].headers["If-None-Match"] == '"v1"'


def test_identical_bytes_without_304_publish_nothing(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.NOT_MODIFIED}

    run(scenario())
    assert published.numbers == [1]
    assert server.count() == 2


def test_changed_feed_publishes_a_new_version(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    changed = SMALL_IPSUM_BYTES.replace(b"192.0.2.1\t1\n", b"198.51.100.1\t3\n")
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(changed))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.numbers == [1, 2]
    old, new = published.versions
    assert listed(old, "192.0.2.1")
    assert not listed(new, "192.0.2.1")
    assert listed(new, "198.51.100.1")


@pytest.mark.parametrize("content_encoding", [True, False], ids=["content-encoding", "bare-gzip-bytes"])
def test_gzip_body_is_accepted(server: FeedServer, tmp_path: Path, content_encoding: bool) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    headers = {"Content_Encoding": "gzip"} if content_encoding else {}
    server.script(IPSUM_URL, ok(gzipped(SMALL_IPSUM_BYTES), **headers))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.versions[0].feeds[0].entries == 10
    assert listed(published.versions[0], "192.0.2.3")


def test_format_is_detected_when_not_configured(server: FeedServer, tmp_path: Path, real_drop: bytes) -> None:
    settings = make_settings(tmp_path, feeds=f"drop={DROP_URL}")
    published = Published()
    server.script(DROP_URL, ok(real_drop))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()

    run(scenario())
    (info,) = published.versions[0].feeds
    assert info.format == "spamhaus"
    assert info.entries == 1385
    assert listed(published.versions[0], "1.10.16.1")


def test_local_file_feed_is_synced(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("# plain\n203.0.113.0/24\n2001:db8::/32\n")
    settings = make_settings(tmp_path, feeds=f"local={feed.as_uri()}")
    published = Published()
    client, seen = failing_client()

    async def scenario() -> None:
        async with open_updater(settings, client, published) as updater:
            assert await updater.sync_once() == {"local": Outcome.UPDATED}
            assert await updater.sync_once() == {"local": Outcome.NOT_MODIFIED}

    run(scenario())
    assert seen == []
    assert published.numbers == [1]
    (info,) = published.versions[0].feeds
    assert (info.v4_entries, info.v6_entries) == (1, 1)
    assert listed(published.versions[0], "2001:db8::1")


# --- refusals: the last good content stays -----------------------------------------


@pytest.mark.parametrize(
    "bad_body",
    [b"", b"# IPsum feed\n# no entries today\n\n"],
    ids=["empty", "only-comments"],
)
def test_empty_feed_is_refused_and_last_good_kept(
    server: FeedServer, tmp_path: Path, bad_body: bytes
) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(bad_body))
    before = syncs_total("ipsum", "refused")

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}
            st = updater.feeds["ipsum"]
            assert st.refusals == 1
            assert st.consecutive_failures == 1
            assert st.last_error is not None
            assert st.last_error.startswith("refused")
            assert "no entries" in st.last_error
            assert st.info is not None
            assert st.info.entries == 10
            assert updater.current is published.versions[0]

    run(scenario())
    assert published.numbers == [1]
    assert listed(published.versions[0], "192.0.2.1")
    assert syncs_total("ipsum", "refused") == before + 1


def test_empty_feed_on_first_sync_publishes_nothing(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(b""))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}
            assert updater.current is None

    run(scenario())
    assert published.versions == []


def test_feed_shrinking_by_90_percent_is_refused(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(ipsum_text(1000)), ok(ipsum_text(100)))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}
            st = updater.feeds["ipsum"]
            assert st.refusals == 1
            assert st.last_error is not None
            assert "shrank" in st.last_error
            assert st.info is not None
            assert st.info.entries == 1000

    run(scenario())
    assert published.numbers == [1]
    assert listed(published.versions[0], "10.0.3.231")  # entry 999


def test_refused_content_is_not_stored(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    good = ipsum_text(1000)
    server.script(IPSUM_URL, ok(good), ok(ipsum_text(100)))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), Published(), store=store) as updater:
            await updater.sync_once()
            await updater.sync_once()

    run(scenario())
    stored = store.load_feed("ipsum")
    assert stored is not None
    assert stored.body == good


def test_moderate_shrink_is_accepted(server: FeedServer, tmp_path: Path) -> None:
    """Losing 40% stays above the default threshold of 50%."""
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(ipsum_text(1000)), ok(ipsum_text(600)))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.numbers == [1, 2]
    assert published.versions[1].feeds[0].entries == 600


def test_shrink_threshold_setting_is_applied(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, shrink_threshold=0.95)
    published = Published()
    server.script(IPSUM_URL, ok(ipsum_text(1000)), ok(ipsum_text(900)))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}

    run(scenario())
    assert published.numbers == [1]


@pytest.mark.parametrize("first_sync", [True, False], ids=["first-sync", "after-good-sync"])
def test_html_page_with_status_200_is_refused(server: FeedServer, tmp_path: Path, first_sync: bool) -> None:
    settings = make_settings(tmp_path, feeds=f"ipsum={IPSUM_URL}")
    published = Published()
    replies = [ok(HTML_PAGE)] if first_sync else [ok(SMALL_IPSUM_BYTES), ok(HTML_PAGE)]
    server.script(IPSUM_URL, *replies)

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            outcomes = [await updater.sync_once() for _ in replies]
            assert outcomes[-1] == {"ipsum": Outcome.REFUSED}
            st = updater.feeds["ipsum"]
            assert st.refusals == 1
            assert st.last_error is not None
            assert "malformed" in st.last_error

    run(scenario())
    assert published.numbers == ([] if first_sync else [1])


def test_truncated_gzip_is_refused(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    packed = gzipped(ipsum_text(2000))
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(packed[: len(packed) // 2]))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}
            assert "gzip" in (updater.feeds["ipsum"].last_error or "")

    run(scenario())
    assert published.numbers == [1]


def test_text_cut_mid_line_counts_the_partial_line_as_malformed(server: FeedServer, tmp_path: Path) -> None:
    """A body cut short inside its last line keeps every complete line."""
    settings = make_settings(tmp_path)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES + b"192.0.2"))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}
            assert updater.feeds["ipsum"].malformed_samples == ["line 13: '192.0.2'"]

    run(scenario())
    info = published.versions[0].feeds[0]
    assert (info.entries, info.malformed) == (10, 1)


# --- fetch failures -------------------------------------------------------------------


def test_404_fails_and_keeps_last_good_content(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    clock = Clock()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), status(404))
    before = syncs_total("ipsum", "failed")

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published, clock=clock) as updater:
            await updater.sync_once()
            good_at = clock.now
            clock.advance(60)
            assert await updater.sync_once() == {"ipsum": Outcome.FAILED}
            st = updater.feeds["ipsum"]
            assert st.last_error == "failed: HTTP 404"
            assert st.consecutive_failures == 1
            assert st.refusals == 0
            assert st.last_attempt == clock.now
            assert st.last_success == good_at
            assert updater.current is published.versions[0]

    run(scenario())
    assert published.numbers == [1]
    assert server.count() == 2
    assert syncs_total("ipsum", "failed") == before + 1


def test_consecutive_failures_count_up_and_reset_on_success(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), status(404), status(404), ok(b""), status(304))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), Published()) as updater:
            counts = []
            for _ in range(5):
                await updater.sync_once()
                counts.append(updater.feeds["ipsum"].consecutive_failures)
            assert counts == [0, 1, 2, 3, 0]
            assert updater.feeds["ipsum"].last_error is None

    run(scenario())


def test_transfer_cut_short_fails_then_recovers(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retry_attempts=2)
    published = Published()
    new = ipsum_text(50)
    cut = streamed([new[:100]], then_raise=httpx.RemoteProtocolError)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), cut, cut, ok(new))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.FAILED}
            assert updater.current is published.versions[0]
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.numbers == [1, 2]
    assert published.versions[1].feeds[0].entries == 50


def test_failure_on_first_sync_publishes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    client, seen = failing_client()

    async def scenario() -> None:
        async with open_updater(settings, client, published) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.FAILED}

    run(scenario())
    assert published.versions == []
    assert len(seen) == settings.retry_attempts


def test_version_numbers_only_grow(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    published = Published()
    server.script(
        IPSUM_URL,
        ok(ipsum_text(100), ETag='"a"'),
        status(304),
        ok(ipsum_text(120), ETag='"b"'),
        status(404),
        ok(b"", ETag='"c"'),
        ok(ipsum_text(130, prefix="11"), ETag='"d"'),
        ok(ipsum_text(140), ETag='"e"'),
    )

    async def scenario() -> list[Outcome]:
        async with open_updater(settings, server.client(), published) as updater:
            return [(await updater.sync_once())["ipsum"] for _ in range(7)]

    outcomes = run(scenario())
    assert outcomes == [
        Outcome.UPDATED,
        Outcome.NOT_MODIFIED,
        Outcome.UPDATED,
        Outcome.FAILED,
        Outcome.REFUSED,
        Outcome.UPDATED,
        Outcome.UPDATED,
    ]
    assert published.numbers == [1, 2, 3, 4]
    assert [v.feeds[0].etag for v in published.versions] == ['"a"', '"b"', '"d"', '"e"']


def test_sync_feed_publishes_only_when_that_feed_changed(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), status(304), ok(ipsum_text(20)))
    server.script(DROP_URL, ok(b"203.0.113.0/24 ; SBL1\n"))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_feed("ipsum") is Outcome.NOT_MODIFIED
            assert await updater.sync_feed("ipsum") is Outcome.UPDATED

    run(scenario())
    assert published.numbers == [1, 2]
    assert server.count(DROP_URL) == 1
    assert listed(published.versions[1], "203.0.113.9")


# --- several feeds ------------------------------------------------------------------


def test_failing_feed_keeps_its_last_good_content_in_new_versions(
    server: FeedServer, tmp_path: Path, real_ipsum: bytes, real_drop: bytes
) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    published = Published()
    # The next ipsum no longer lists its first (top-scored) address.
    first_line = b"77.90.185.20\t10\n"
    assert first_line in real_ipsum
    next_ipsum = real_ipsum.replace(first_line, b"")
    server.script(IPSUM_URL, ok(real_ipsum), ok(next_ipsum))
    server.script(DROP_URL, ok(real_drop), status(500))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED, "drop": Outcome.UPDATED}
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED, "drop": Outcome.FAILED}
            assert updater.feeds["drop"].last_error == "failed: HTTP 500"

    run(scenario())
    assert published.numbers == [1, 2]
    first, second = published.versions
    assert [f.name for f in second.feeds] == ["ipsum", "drop"]
    assert second.feeds[1] == first.feeds[1]
    assert second.feeds[0].entries == 120_429
    assert second.feeds[1].entries == 1385
    assert server.count(DROP_URL) == 1 + settings.retry_attempts
    # The failing feed's networks still answer, the updated feed's change shows.
    assert "drop" in feeds_of(second, "1.10.16.1")
    assert "drop" in feeds_of(second, "2.56.192.77")
    assert "ipsum" in feeds_of(first, "77.90.185.20")
    assert "ipsum" not in feeds_of(second, "77.90.185.20")
    assert "ipsum" in feeds_of(second, "77.239.124.102")


def test_refused_feed_keeps_its_content_while_the_other_updates(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(HTML_PAGE))
    server.script(DROP_URL, ok(b"203.0.113.0/24 ; SBL1\n"), ok(b"198.51.100.0/24 ; SBL2\n"))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED, "drop": Outcome.UPDATED}

    run(scenario())
    second = published.versions[-1]
    assert published.numbers == [1, 2]
    assert feeds_of(second, "192.0.2.5") == ("ipsum",)
    assert feeds_of(second, "198.51.100.1") == ("drop",)
    assert not listed(second, "203.0.113.1")


# --- persistence ------------------------------------------------------------------


def test_successful_sync_stores_the_body_and_validators(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    clock = Clock()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES, ETag='"v1"'))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), Published(), store=store, clock=clock) as u:
            await u.sync_once()

    run(scenario())
    stored = store.load_feed("ipsum")
    assert stored is not None
    assert stored.body == SMALL_IPSUM_BYTES
    assert stored.source == IPSUM_URL
    assert stored.format == "ipsum"
    assert stored.etag == '"v1"'
    assert stored.fetched_at == clock.now


def test_restart_restores_from_disk_without_network(
    server: FeedServer, tmp_path: Path, real_ipsum: bytes
) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    store = StateStore(settings.state_dir)
    first = Published()
    server.script(IPSUM_URL, ok(real_ipsum, ETag='"i1"'))
    server.script(DROP_URL, ok(b"; drop\n203.0.113.0/24 ; SBL1\n2001:db8::/32 ; SBL2\n"))

    async def sync() -> None:
        async with open_updater(settings, server.client(), first, store=store) as updater:
            await updater.sync_once()

    run(sync())
    restored = Published()
    client, seen = failing_client()

    async def restart() -> None:
        async with open_updater(settings, client, restored, store=StateStore(settings.state_dir)) as updater:
            version = await updater.restore()
            assert version is restored.versions[0]
            assert updater.current is version
            assert seen == []
            # Syncing now fails on the network and changes nothing served.
            assert await updater.sync_once() == {"ipsum": Outcome.FAILED, "drop": Outcome.FAILED}

    run(restart())
    assert len(seen) == 2 * settings.retry_attempts
    assert len(restored.versions) == 1
    before, after = first.versions[0], restored.versions[0]
    assert after.checksum == before.checksum
    assert after.feeds == before.feeds
    assert not after.bootstrap
    for address in ["77.90.185.20", "162.251.62.103", "203.0.113.200", "2001:db8::5", "192.0.2.1", "8.8.8.8"]:
        assert feeds_of(after, address) == feeds_of(before, address), address
    assert feeds_of(after, "203.0.113.200") == ("drop",)
    assert feeds_of(after, "77.90.185.20") == ("ipsum",)


def test_restored_validators_are_used_for_conditional_get(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES, ETag='"v1"'), status(304))

    async def sync() -> None:
        async with open_updater(
            settings, server.client(), Published(), store=StateStore(tmp_path / "state")
        ) as u:
            await u.sync_once()

    run(sync())
    published = Published()

    async def restart() -> None:
        async with open_updater(
            settings, server.client(), published, store=StateStore(tmp_path / "state")
        ) as u:
            await u.restore()
            assert await u.sync_once() == {"ipsum": Outcome.NOT_MODIFIED}

    run(restart())
    assert server.requests[-1].headers["If-None-Match"] == '"v1"'
    assert published.numbers == [1]


def test_restore_after_adopting_the_same_version_publishes_nothing(
    server: FeedServer, tmp_path: Path
) -> None:
    """A restart serving its stored version neither republishes it nor restarts numbering."""
    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(ipsum_text(20)))

    async def sync() -> None:
        async with open_updater(settings, server.client(), Published(store), store=store) as u:
            await u.sync_once()

    run(sync())
    served = store.load_version()
    assert served is not None
    published = Published()

    async def restart() -> None:
        async with open_updater(settings, server.client(), published, store=store) as u:
            u.adopt(served)
            assert await u.restore() is None
            assert await u.sync_once() == {"ipsum": Outcome.UPDATED}

    run(restart())
    assert published.numbers == [served.number + 1]


def test_tampered_stored_body_is_ignored(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def sync() -> None:
        async with open_updater(settings, server.client(), Published(), store=store) as u:
            await u.sync_once()

    run(sync())
    body = store.root / "feeds" / "ipsum.body"
    body.write_bytes(SMALL_IPSUM_BYTES + b"203.0.113.66\t9\n")
    published = Published()
    client, _ = failing_client()

    async def restart() -> None:
        async with open_updater(settings, client, published, store=store) as u:
            assert await u.restore() is None
            assert u.feeds["ipsum"].info is None

    run(restart())
    assert published.versions == []


def test_stored_feed_from_another_source_is_ignored(server: FeedServer, tmp_path: Path) -> None:
    """After the feed's URL is reconfigured, the old URL's content is not served under it."""
    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def sync() -> None:
        async with open_updater(settings, server.client(), Published(), store=store) as u:
            await u.sync_once()

    run(sync())
    moved = make_settings(tmp_path, feeds="ipsum=ipsum:https://mirror.test/ipsum.txt")
    published = Published()
    client, _ = failing_client()

    async def restart() -> None:
        async with open_updater(moved, client, published, store=store) as u:
            assert await u.restore() is None

    run(restart())
    assert published.versions == []


def test_unparseable_stored_body_is_ignored(tmp_path: Path) -> None:
    """A stored body that no longer parses (e.g. saved by an older release) is skipped."""
    from blocklistupdater.statestore import StoredFeed

    settings = make_settings(tmp_path)
    store = StateStore(settings.state_dir)
    store.save_feed(
        StoredFeed(
            name="ipsum",
            source=IPSUM_URL,
            format="ipsum",
            etag=None,
            last_modified=None,
            sha256=hashlib.sha256(HTML_PAGE).hexdigest(),
            fetched_at=1.0,
            body=HTML_PAGE,
        )
    )
    published = Published()
    client, _ = failing_client()

    async def restart() -> None:
        async with open_updater(settings, client, published, store=store) as u:
            assert await u.restore() is None

    run(restart())
    assert published.versions == []


# --- bootstrap ----------------------------------------------------------------------


def test_fresh_install_without_network_serves_the_bundled_snapshot(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds="ipsum", bootstrap=True)
    assert settings.feeds[0].source == PRESETS["ipsum"][1]
    published = Published()
    client, seen = failing_client()

    async def scenario() -> None:
        async with open_updater(settings, client, published, store=StateStore(settings.state_dir)) as u:
            await u.restore()
            assert seen == []
            # The network stays down: no sync replaces the bundled data.
            assert await u.sync_once() == {"ipsum": Outcome.FAILED}
            assert u.feeds["ipsum"].is_stale(now=0.0, interval=86400.0)

    run(scenario())
    assert published.numbers == [0]
    version = published.versions[0]
    assert version.bootstrap
    (info,) = version.feeds
    assert info.bootstrap
    assert info.data_date == BOOTSTRAP_DATE
    assert info.source == bootstrap_source()
    assert info.entries == 120_430
    assert is_stale(info, None, now=0.0, interval=86400.0)
    assert listed(version, "77.90.185.20")
    assert not listed(version, "192.0.2.1")


def test_first_sync_after_bootstrap_publishes_version_1(server: FeedServer, tmp_path: Path) -> None:
    """The shrink check does not compare a real feed with the bundled one."""
    settings = make_settings(tmp_path, feeds="ipsum", bootstrap=True)
    published = Published()
    server.script(PRESETS["ipsum"][1], ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as u:
            await u.restore()
            assert await u.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.numbers == [0, 1]
    assert "If-None-Match" not in server.requests[0].headers
    latest = published.versions[1]
    assert not latest.bootstrap
    assert latest.feeds[0].entries == 10
    assert not listed(latest, "77.90.185.20")


def test_bootstrap_disabled_publishes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds="ipsum", bootstrap=False)
    published = Published()
    client, _ = failing_client()

    async def scenario() -> None:
        async with open_updater(settings, client, published, store=StateStore(settings.state_dir)) as u:
            assert await u.restore() is None
            assert u.current is None

    run(scenario())
    assert published.versions == []


def test_bootstrap_only_applies_to_the_ipsum_preset_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds=f"ipsum=ipsum:{IPSUM_URL}", bootstrap=True)
    published = Published()
    client, _ = failing_client()

    async def scenario() -> None:
        async with open_updater(settings, client, published) as u:
            assert await u.restore() is None

    run(scenario())
    assert published.versions == []


def test_stored_feed_wins_over_the_bundled_snapshot(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, feeds="ipsum", bootstrap=True)
    store = StateStore(settings.state_dir)
    server.script(PRESETS["ipsum"][1], ok(SMALL_IPSUM_BYTES))

    async def sync() -> None:
        async with open_updater(settings, server.client(), Published(), store=store) as u:
            await u.sync_once()

    run(sync())
    published = Published()
    client, _ = failing_client()

    async def restart() -> None:
        async with open_updater(settings, client, published, store=store) as u:
            await u.restore()

    run(restart())
    assert published.numbers == [1]
    assert not published.versions[0].bootstrap
    assert published.versions[0].feeds[0].entries == 10


# --- publishing -------------------------------------------------------------------


class FlakyPublish(Published):
    """Fails the ``fail_call``-th publish (1-based), records the others."""

    def __init__(self, fail_call: int) -> None:
        super().__init__()
        self.calls = 0
        self._fail_call = fail_call

    async def __call__(self, version: Version) -> None:
        self.calls += 1
        if self.calls == self._fail_call:
            raise OSError(28, "No space left on device")
        await super().__call__(version)


@pytest.mark.parametrize("sync", ["sync_once", "sync_feed"])
def test_failed_publish_is_retried_by_the_next_sync(server: FeedServer, tmp_path: Path, sync: str) -> None:
    """Regression: an accepted change whose publish failed was never published
    once the source answered "not modified" afterwards."""
    settings = make_settings(tmp_path)
    published = FlakyPublish(fail_call=2)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES), ok(ipsum_text(20)), status(304))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:

            async def step() -> object:
                if sync == "sync_once":
                    return (await updater.sync_once())["ipsum"]
                return await updater.sync_feed("ipsum")

            assert await step() is Outcome.UPDATED
            with pytest.raises(OSError, match="No space left"):
                await step()
            assert updater.current is published.versions[0]
            assert await step() is Outcome.NOT_MODIFIED
            assert updater.current is published.versions[-1]
            assert await step() is Outcome.NOT_MODIFIED

    run(scenario())
    assert published.numbers == [1, 2]
    assert published.versions[1].feeds[0].entries == 20
    assert published.calls == 3


# --- robustness -------------------------------------------------------------------


def test_identical_bytes_with_a_new_etag_keep_the_new_etag(server: FeedServer, tmp_path: Path) -> None:
    """Otherwise every later conditional GET sends a stale ETag and downloads in full."""
    settings = make_settings(tmp_path)
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES, ETag='"v1"'), ok(SMALL_IPSUM_BYTES, ETag='"v2"'))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), Published()) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.NOT_MODIFIED}
            info = updater.feeds["ipsum"].info
            assert info is not None
            assert info.etag == '"v2"'
            await updater.sync_once()

    run(scenario())
    assert server.requests[2].headers["If-None-Match"] == '"v2"'


def test_unexpected_error_in_one_feed_does_not_sink_the_others(
    server: FeedServer, tmp_path: Path, real_drop: bytes
) -> None:
    settings = make_settings(tmp_path, feeds=TWO_FEEDS)
    published = Published()
    server.script(DROP_URL, ok(real_drop))

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in a transport")

    server.script(IPSUM_URL, broken)

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            outcomes = await updater.sync_once()
            assert outcomes == {"ipsum": Outcome.FAILED, "drop": Outcome.UPDATED}
            assert "a bug in a transport" in (updater.feeds["ipsum"].last_error or "")

    run(scenario())
    assert published.numbers == [1]
    assert listed(published.versions[0], "1.10.16.1")


def test_feed_that_cannot_be_persisted_is_still_served(server: FeedServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "blocked").write_text("a file where the state dir should be")
    store = StateStore(tmp_path / "blocked" / "state")
    published = Published()
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published, store=store) as updater:
            assert await updater.sync_once() == {"ipsum": Outcome.UPDATED}

    run(scenario())
    assert published.numbers == [1]


def test_restore_rebuilds_when_min_score_changed(server: FeedServer, tmp_path: Path) -> None:
    """The stored version was compiled with another min_score: it must not be kept."""
    store = StateStore(tmp_path / "state")
    published = Published(store)
    server.script(IPSUM_URL, ok(ipsum_text(10)))

    async def first() -> None:
        async with open_updater(make_settings(tmp_path), server.client(), published, store=store) as updater:
            await updater.sync_once()

    run(first())
    stored = store.load_version()
    assert stored is not None
    assert stored.min_score == 0
    later = Published(store)

    async def restart() -> None:
        client, _ = failing_client()
        settings = make_settings(tmp_path, min_score=5)
        async with open_updater(settings, client, later, store=store) as updater:
            updater.adopt(stored)
            await updater.restore()

    run(restart())
    assert later.numbers == [2]
    assert later.versions[0].min_score == 5


def test_bundled_snapshot_never_replaces_a_live_synced_version(server: FeedServer, tmp_path: Path) -> None:
    """A fresh worker without its state dir must not publish 2026 bundled data over live data."""
    server.script(IPSUM_URL, ok(SMALL_IPSUM_BYTES))
    first = Published()

    async def sync() -> None:
        async with open_updater(make_settings(tmp_path / "a"), server.client(), first) as updater:
            await updater.sync_once()

    run(sync())
    live = first.versions[0]
    assert not live.bootstrap
    settings = make_settings(tmp_path / "b", feeds="ipsum", bootstrap=True)
    later = Published()
    client, _ = failing_client()

    async def fresh_worker() -> None:
        async with open_updater(settings, client, later, store=StateStore(settings.state_dir)) as updater:
            updater.adopt(live)
            await updater.restore()
            assert await updater.sync_once() == {"ipsum": Outcome.FAILED}

    run(fresh_worker())
    assert later.numbers == []


def test_feed_listing_everything_is_refused_and_last_good_kept(server: FeedServer, tmp_path: Path) -> None:
    """A netset gaining 0.0.0.0/0 would block every client: refused, the last good list serves on."""
    settings = make_settings(tmp_path, feeds=f"ipsum=netset:{IPSUM_URL}")
    published = Published()
    server.script(IPSUM_URL, ok(b"192.0.2.1\n198.51.100.0/24\n"), ok(b"192.0.2.1\n0.0.0.0/0\n"))

    async def scenario() -> None:
        async with open_updater(settings, server.client(), published) as updater:
            await updater.sync_once()
            assert await updater.sync_once() == {"ipsum": Outcome.REFUSED}
            st = updater.feeds["ipsum"]
            assert st.last_error is not None
            assert "0.0.0.0-255.255.255.255" in st.last_error
            assert "broader than a /8" in st.last_error

    run(scenario())
    assert published.numbers == [1]
    assert not listed(published.versions[0], "8.8.8.8")
    assert listed(published.versions[0], "198.51.100.7")
