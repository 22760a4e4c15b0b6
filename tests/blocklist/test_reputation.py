"""The reputation model: iprepd's violation rule, lazy recovery and the moment a block lifts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.errors import ConfigError
from blocklist.reputation import (
    Note,
    Policy,
    State,
    Violation,
    apply_violation,
    blocked_until,
    expires_at,
    key_text,
    parse_violations,
    reputation_key,
    score_at,
)

POLICY = Policy(points=5, interval_ms=60_000, block_below=50)
LOGIN = Violation("failed_login", 5, 50)
SCAN = Violation("scan", 40, 0)


def note(at: int, name: str = "scan") -> Note:
    return Note(at, name, "", "t")


def test_a_violation_stops_at_its_decrease_limit_and_never_lowers_below_it() -> None:
    state = None
    for i in range(15):
        state = apply_violation(state, LOGIN, note(i, "failed_login"), POLICY)
    assert state is not None
    assert state.score == 50
    low = State(30, 0)
    assert apply_violation(low, LOGIN, note(1, "failed_login"), POLICY).score == 30
    assert apply_violation(State(52, 0), LOGIN, note(1, "failed_login"), POLICY).score == 50


def test_recovery_is_lazy_whole_steps_and_capped_at_100() -> None:
    state = apply_violation(None, SCAN, note(0), POLICY)
    assert score_at(state, 59_999, POLICY) == 60
    assert score_at(state, 60_000, POLICY) == 65
    assert score_at(state, 10 * 60_000, POLICY) == 100
    assert score_at(None, 0, POLICY) == 100


def test_the_block_lifts_at_the_predicted_moment_and_suppression_delays_it() -> None:
    state = apply_violation(apply_violation(None, SCAN, note(0), POLICY), SCAN, note(0), POLICY)
    assert state.score == 20
    lifts = blocked_until(state, 0, POLICY)
    assert lifts == 6 * 60_000
    assert score_at(state, lifts - 1, POLICY) < 50 <= score_at(state, lifts, POLICY)
    assert blocked_until(state, lifts, POLICY) is None
    delayed = apply_violation(state, SCAN, note(1000), POLICY, suppress_ms=3_600_000)
    assert delayed.decay_after == 3_601_000
    assert blocked_until(delayed, 1000, POLICY) == 3_601_000 + 10 * 60_000
    # A shorter suppression later never shortens the longer one.
    again = apply_violation(delayed, LOGIN, note(2000, "failed_login"), POLICY, suppress_ms=10)
    assert again.decay_after == 3_601_000


def test_state_expires_when_recovered_or_out_of_retention() -> None:
    state = apply_violation(None, SCAN, note(0), POLICY)
    assert expires_at(state, POLICY, 0) == 8 * 60_000
    assert expires_at(state, POLICY, 60_000) == 60_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600_000), st.sampled_from([LOGIN, SCAN])), max_size=12))
def test_the_predicted_lift_is_the_first_moment_at_the_threshold(
    reports: list[tuple[int, Violation]],
) -> None:
    state = None
    at = 0
    for gap, violation in reports:
        at += gap
        state = apply_violation(state, violation, note(at, violation.name), POLICY)
    until = blocked_until(state, at, POLICY)
    if until is None:
        assert score_at(state, at, POLICY) >= 50
        return
    assert score_at(state, until - 1, POLICY) < 50
    assert score_at(state, until, POLICY) >= 50


def test_keys_are_the_ipv4_address_or_the_ipv6_network() -> None:
    assert key_text(*reputation_key(4, 0xC0000201, 64), 64) == "192.0.2.1"
    assert key_text(*reputation_key(6, 0x20010DB8 << 96 | 0x1234, 64), 64) == "2001:db8::/64"
    assert key_text(*reputation_key(6, 0x20010DB8 << 96, 48), 48) == "2001:db8::/48"


def test_violations_are_parsed_and_checked() -> None:
    assert parse_violations("a:5:50, b:20:0") == (Violation("a", 5, 50), Violation("b", 20, 0))
    for bad in ("a:5", "a:x:1", "a:500:0", "a:1:1,a:2:2"):
        with pytest.raises(ConfigError):
            parse_violations(bad)
