"""The pure history model: network keys, CIDR pieces, interval edits, labels, moments."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blocklist.addresses import V4, V6
from blocklist.feedparsers import FeedFormat, parse_feed
from blocklist.history import (
    address_keys,
    cidr_pieces,
    feed_members,
    iso_moment,
    key_network,
    matches_at,
    network_key,
    parse_moment,
    set_span,
)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**16))
def test_cidr_pieces_cover_exactly_the_range_like_ipaddress(first: int, span: int) -> None:
    last = min(first + span, 2**32 - 1)
    expected = list(
        ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
    )
    assert [f"{ipaddress.IPv4Address(s)}/{p}" for s, p in cidr_pieces(first, last, 32)] == [
        str(n) for n in expected
    ]


def test_address_keys_hold_the_key_of_every_containing_network() -> None:
    value = int(ipaddress.IPv4Address("203.0.113.77"))
    keys = address_keys(V4, value)
    assert len(keys) == 33
    assert network_key(V4, 24, int(ipaddress.IPv4Address("203.0.113.0"))) in keys
    assert key_network(keys[24]) == "203.0.113.0/24"
    assert len(address_keys(V6, 1)) == 129


def test_set_span_splits_and_merges_intervals() -> None:
    record = set_span([], 10.0, None, ("a", 0))
    assert record == [(10.0, None, "a", 0)]
    record = set_span(record, 20.0, 30.0, None)
    assert record == [(10.0, 20.0, "a", 0), (30.0, None, "a", 0)]
    # Filling the gap with the same label and score merges back into one interval.
    assert set_span(record, 20.0, 30.0, ("a", 0)) == [(10.0, None, "a", 0)]
    # Another label keeps three intervals.
    assert set_span(record, 20.0, 30.0, ("b", 0)) == [
        (10.0, 20.0, "a", 0),
        (20.0, 30.0, "b", 0),
        (30.0, None, "a", 0),
    ]


def test_listed_since_spans_contiguous_intervals_of_different_networks() -> None:
    narrow = network_key(V4, 24, int(ipaddress.IPv4Address("198.51.100.0")))
    wide = network_key(V4, 23, int(ipaddress.IPv4Address("198.51.100.0")))
    lookups = {"f": {wide: [(100.0, 200.0, "SBL1", 0)], narrow: [(200.0, None, "SBL2", 0)]}}
    (match,) = matches_at(lookups, None)
    assert (match.network, match.label, match.listed_since) == ("198.51.100.0/24", "SBL2", 100.0)
    (past,) = matches_at(lookups, 150.0)
    assert (past.network, past.listed_since) == ("198.51.100.0/23", 100.0)
    assert matches_at(lookups, 99.0) == []


@pytest.mark.parametrize(
    ("fmt", "text", "label", "score"),
    [
        (FeedFormat.SPAMHAUS, b"; Spamhaus DROP List 2020/01/21\n1.2.3.0/24 ; SBL123456\n", "SBL123456", 0),
        (FeedFormat.IPSUM, b"# ipsum\n1.2.3.4\t7\n", "7", 7),
        (FeedFormat.PLAIN, b"1.2.3.4 # scanner, seen 2020-01-01\n", "scanner, seen 2020-01-01", 0),
        (FeedFormat.NETSET, b"# firehol\n1.2.3.0/24 ; botnet C&C\n", "botnet C&C", 0),
        (FeedFormat.PLAIN, b"1.2.3.4\n", "", 0),
    ],
)
def test_each_format_keeps_its_entry_label(fmt: FeedFormat, text: bytes, label: str, score: int) -> None:
    parsed = parse_feed(text, fmt, max_size=10**6)
    assert [(parsed.v4.label(0), parsed.v4.scores[0])] == [(label, score)]
    ((_, member),) = feed_members(parsed.v4, parsed.v6).items()
    assert member == (label, score)


def test_labels_are_stripped_of_control_characters_and_capped() -> None:
    parsed = parse_feed(b"1.2.3.4 # bad\x01\x1b[31m" + b"x" * 300 + b"\n", FeedFormat.PLAIN, max_size=10**6)
    label = parsed.v4.label(0)
    assert label.startswith("bad[31m")
    assert len(label) == 100
    assert all(ch.isprintable() for ch in label)


def test_a_range_that_is_not_one_cidr_is_kept_as_its_pieces() -> None:
    parsed = parse_feed(b"10.0.0.1-10.0.0.6 # odd\n", FeedFormat.PLAIN, max_size=10**6)
    members = feed_members(parsed.v4, parsed.v6)
    assert sorted(map(key_network, members)) == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
    assert set(members.values()) == {("odd", 0)}


def test_min_score_leaves_out_what_the_index_leaves_out() -> None:
    parsed = parse_feed(b"# ipsum\n1.2.3.4\t1\n5.6.7.8\t3\n", FeedFormat.IPSUM, max_size=10**6)
    assert list(map(key_network, feed_members(parsed.v4, parsed.v6, min_score=2))) == ["5.6.7.8/32"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-06-01", "2020-06-01T00:00:00Z"),
        ("2020-06-01T00:00:00Z", "2020-06-01T00:00:00Z"),
        ("2020-06-01T02:30:00+02:00", "2020-06-01T00:30:00Z"),
        ("2020-06-01t00:00:00.5z", "2020-06-01T00:00:00.500Z"),
    ],
)
def test_moments_accept_rfc3339_and_bare_dates(text: str, expected: str) -> None:
    assert iso_moment(parse_moment(text)) == expected


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2020-06-01T00:00:00", "2020-13-01", "2020-06-01T25:00:00Z", "1590969600"]
)
def test_malformed_moments_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="not a date or RFC 3339"):
        parse_moment(text)
