"""Sanity checks a parsed feed must pass before it replaces the last good one."""

from __future__ import annotations

import pytest

from blocklist.errors import FeedError, FeedRefused
from blocklist.feedparsers import FamilyEntries, FeedFormat, ParsedFeed
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
