"""Sanity checks a parsed feed must pass before it replaces the last good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocklist.addresses import parse_network
from blocklist.errors import FeedError, FeedRefused
from blocklist.feedparsers import FamilyEntries, FeedFormat, ParsedFeed, parse_feed
from blocklist.guard import check_feed


def feed_with(v4_count: int, v6_count: int = 0) -> ParsedFeed:
    v4, v6 = FamilyEntries(), FamilyEntries()
    for i in range(v4_count):
        v4.append(i, i, 0)
    for i in range(v6_count):
        v6.append(i, i, 0)
    return ParsedFeed(format=FeedFormat.PLAIN, v4=v4, v6=v6)


def test_empty_feed_is_refused() -> None:
    with pytest.raises(FeedRefused, match="no entries"):
        check_feed(feed_with(0), previous_entries=None, shrink_threshold=0.5)


def test_empty_feed_is_refused_even_with_a_zero_threshold() -> None:
    with pytest.raises(FeedRefused):
        check_feed(feed_with(0), previous_entries=100, shrink_threshold=0.0)


def test_first_feed_without_previous_is_accepted() -> None:
    check_feed(feed_with(1), previous_entries=None, shrink_threshold=0.5)


def test_previous_of_zero_counts_as_no_previous() -> None:
    check_feed(feed_with(1), previous_entries=0, shrink_threshold=0.5)


def test_shrink_below_threshold_is_refused() -> None:
    with pytest.raises(FeedRefused, match="shrank to 49 entries") as info:
        check_feed(feed_with(49), previous_entries=100, shrink_threshold=0.5)
    assert isinstance(info.value, FeedError)
    assert "49%" in str(info.value)
    assert "threshold 50%" in str(info.value)


def test_shrink_to_exactly_the_threshold_is_accepted() -> None:
    check_feed(feed_with(50), previous_entries=100, shrink_threshold=0.5)


def test_growth_and_small_shrink_are_accepted() -> None:
    check_feed(feed_with(200), previous_entries=100, shrink_threshold=0.5)
    check_feed(feed_with(99), previous_entries=100, shrink_threshold=0.5)


def test_both_families_count_towards_the_size() -> None:
    check_feed(feed_with(30, 30), previous_entries=100, shrink_threshold=0.5)
    with pytest.raises(FeedRefused):
        check_feed(feed_with(30, 10), previous_entries=100, shrink_threshold=0.5)


def test_threshold_of_one_refuses_any_shrink() -> None:
    check_feed(feed_with(100), previous_entries=100, shrink_threshold=1.0)
    with pytest.raises(FeedRefused):
        check_feed(feed_with(99), previous_entries=100, shrink_threshold=1.0)


def test_threshold_of_zero_accepts_any_non_empty_feed() -> None:
    check_feed(feed_with(1), previous_entries=1_000_000, shrink_threshold=0.0)


def feed_of(*networks: str) -> ParsedFeed:
    v4, v6 = FamilyEntries(), FamilyEntries()
    for text in networks:
        family, first, last = parse_network(text)
        (v4 if family == 4 else v6).append(first, last, 0)
    return ParsedFeed(format=FeedFormat.NETSET, v4=v4, v6=v6)


@pytest.mark.parametrize(
    "network",
    ["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/2", "2.0.0.0/7", "1.0.0.0-2.0.0.0", "::/0", "2000::/3",
     "2a00::/15", "::ffff:0.0.0.0/96", "::ffff:0.0.0.0/97"],
)  # fmt: skip
def test_a_feed_with_an_over_broad_entry_is_refused(network: str) -> None:
    """One bad line such as 0.0.0.0/0 would block every client."""
    with pytest.raises(FeedRefused, match="broader than a /") as info:
        check_feed(feed_of("192.0.2.1", network), previous_entries=None, shrink_threshold=0.5)
    assert "BLOCKLIST_BROADEST_PREFIX_V" in str(info.value)


@pytest.mark.parametrize(
    "network",
    ["1.0.0.0/8", "224.0.0.0/3", "0.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
     "2a00::/16", "fc00::/7", "fe80::/10", "::ffff:1.0.0.0/104"],
)  # fmt: skip
def test_broad_entries_within_the_bound_or_outside_internet_space_are_accepted(network: str) -> None:
    """FireHOL level 1 lists 224.0.0.0/3 and the private ranges: no client comes from them."""
    check_feed(feed_of("192.0.2.1", network), previous_entries=None, shrink_threshold=0.5)


def test_a_zero_bound_allows_any_entry() -> None:
    check_feed(
        feed_of("0.0.0.0/0", "::/0"),
        previous_entries=None,
        shrink_threshold=0.5,
        broadest_v4=0,
        broadest_v6=0,
    )


def test_the_bound_is_a_setting() -> None:
    with pytest.raises(FeedRefused, match="broader than a /16"):
        check_feed(feed_of("8.8.0.0/15"), previous_entries=None, shrink_threshold=0.5, broadest_v4=16)
    check_feed(feed_of("8.8.0.0/16"), previous_entries=None, shrink_threshold=0.5, broadest_v4=16)


def test_every_real_feed_passes_the_default_bounds(shared_data: Path) -> None:
    for path in sorted(shared_data.rglob("*")):
        if path.is_file() and path.suffix in {".txt", ".netset"}:
            parsed = parse_feed(path.read_bytes(), FeedFormat.AUTO, max_size=1 << 26)
            check_feed(parsed, previous_entries=None, shrink_threshold=0.5)
