"""Overrides compiled for lookups, against a brute-force model; network normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import format_address
from blocklist.decision import ControlView
from blocklist.errors import InvalidAddress
from blocklist.overrides import Override, normalize_network, prefix_len

# A small corner of the IPv4 space, so that overrides overlap often.
BASE = 0xC0000200  # 192.0.2.0
SPAN = 64


@st.composite
def overrides(draw: st.DrawFn) -> list[Override]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        first = BASE + draw(st.integers(0, SPAN - 1))
        last = min(BASE + SPAN - 1, first + draw(st.integers(0, 20)))
        network = (
            f"{format_address(4, first)}-{format_address(4, last)}"
            if last > first
            else format_address(4, first)
        )
        expires = draw(st.one_of(st.none(), st.integers(1, 10).map(float)))
        action = draw(st.sampled_from(["allow", "block"]))
        out.append(Override(i + 1, normalize_network(network)[0], action, "", 0.0, expires, "t"))
    return out


@settings(max_examples=300, deadline=None)
@given(overrides(), st.integers(0, 11).map(float))
def test_compiled_verdicts_match_the_overrides_one_by_one(items: list[Override], now: float) -> None:
    view = ControlView(clock=lambda: now)
    table = {o.id: o for o in items}
    view.install(table, view.compile(table))
    for value in range(BASE - 1, BASE + SPAN + 1):
        covering = [o for o in items if o.bounds[1] <= value <= o.bounds[2] and o.active(now)]
        want = "allow" if any(o.action == "allow" for o in covering) else "block" if covering else None
        assert view.verdict(4, value, now) == want, format_address(4, value)
        assert {o.id for o in view.applying(4, value, now)} == {o.id for o in covering}


def test_an_expiry_is_honoured_to_the_millisecond_without_recompiling() -> None:
    item = Override(1, "192.0.2.0/24", "block", "", 0.0, 100.0, "t")
    view = ControlView(clock=lambda: 0.0)
    view.install({1: item}, view.compile({1: item}))
    assert view.verdict(4, BASE + 5, 99.999) == "block"
    assert view.verdict(4, BASE + 5, 100.0) is None


def test_networks_are_normalised_and_typos_refused() -> None:
    assert normalize_network("203.0.113.0/24")[0] == "203.0.113.0/24"
    assert normalize_network(" 203.0.113.9 ")[0] == "203.0.113.9/32"
    assert normalize_network("2001:db8::1")[0] == "2001:db8::1/128"
    assert normalize_network("::ffff:192.0.2.1")[0] == "192.0.2.1/32"
    assert normalize_network("192.0.2.1-192.0.2.9")[0] == "192.0.2.1-192.0.2.9"
    with pytest.raises(InvalidAddress, match=r"network is 203\.0\.113\.0/24"):
        normalize_network("203.0.113.7/24")
    with pytest.raises(InvalidAddress):
        normalize_network("example.com")
    assert prefix_len(4, BASE, BASE + 255) == 24
    assert prefix_len(4, 0, (1 << 32) - 1) == 0


def test_ended_reputation_blocks_are_pruned_unless_set_again() -> None:
    now = [1000.0]
    view = ControlView(clock=lambda: now[0])
    view.replace_blocked(view.build_blocked([("192.0.2.1", 1_500_000), ("192.0.2.2", 3_000_000), ("bad", 1)]))
    assert view.verdict(4, BASE + 1) == "reputation"
    now[0] = 2000.0
    assert view.verdict(4, BASE + 1) is None
    ended = view.ended_blocks()
    view.set_blocked("192.0.2.1", 9_000_000)  # blocked again before the prune lands
    view.prune(ended)
    assert view.blocked4 == {BASE + 1: 9_000_000, BASE + 2: 3_000_000}
    now[0] = 10_000.0
    view.prune(view.ended_blocks())
    assert view.blocked4 == {}
    assert not view.active
