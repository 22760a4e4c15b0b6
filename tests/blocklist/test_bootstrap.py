"""The bundled ipsum snapshot served before the first sync."""

from __future__ import annotations

import gzip
from pathlib import Path

from blocklist.bootstrap import BOOTSTRAP_DATE, BOOTSTRAP_FEED, bootstrap_source, read_bootstrap
from blocklist.feedparsers import GZIP_MAGIC, FeedFormat, parse_feed
from blocklist.settings import PRESETS

BIG = 1 << 28


def test_bundled_snapshot_is_gzip() -> None:
    assert read_bootstrap().startswith(GZIP_MAGIC)


def test_bundled_snapshot_parses_to_the_shared_ipsum_file(shared_data: Path) -> None:
    bundled = parse_feed(read_bootstrap(), max_size=BIG)
    shared = parse_feed((shared_data / "ipsum" / f"ipsum-{BOOTSTRAP_DATE}.txt").read_bytes(), max_size=BIG)
    assert bundled.format is FeedFormat.IPSUM
    assert bundled.malformed == 0
    assert bundled.entries == shared.entries == 120_430
    assert bundled.v4.firsts == shared.v4.firsts
    assert bundled.v4.lasts == shared.v4.lasts
    assert bundled.v4.scores == shared.v4.scores
    assert len(bundled.v6) == 0


def test_bundled_snapshot_header_carries_its_date() -> None:
    bundled = parse_feed(read_bootstrap(), max_size=BIG)
    assert bundled.entries > 0
    head = gzip.decompress(read_bootstrap())[:400].decode()
    assert "Last update: Sat, 22 Aug 2026" in head
    assert BOOTSTRAP_DATE == "2026-08-22"


def test_bootstrap_feed_is_a_preset_and_source_names_the_file() -> None:
    assert BOOTSTRAP_FEED in PRESETS
    assert PRESETS[BOOTSTRAP_FEED][0] is FeedFormat.IPSUM
    assert bootstrap_source() == f"bundled:ipsum-{BOOTSTRAP_DATE}.txt.gz"
