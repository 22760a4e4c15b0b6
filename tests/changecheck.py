"""Checks of ``/v1/changes`` answers against a model of the archives, as address spans."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

import httpx

from blocklist.history import parse_moment
from tests.archives import ArchiveModel, IpNetwork

Covered = set[IpNetwork]
#: An address set as merged, sorted (family, first, last) spans: equal sets, equal lists.
Spans = list[tuple[int, int, int]]


def spans(nets: Iterable[IpNetwork]) -> Spans:
    """The address set ``nets`` cover."""
    return joined((n.version, int(n.network_address), int(n.broadcast_address)) for n in nets)


def joined(items: Iterable[tuple[int, int, int]]) -> Spans:
    """Spans of any order, overlapping or adjacent, merged."""
    out: Spans = []
    for family, first, last in sorted(items):
        if out and out[-1][0] == family and first <= out[-1][2] + 1:
            out[-1] = (family, out[-1][1], max(last, out[-1][2]))
        else:
            out.append((family, first, last))
    return out


def minus(a: Spans, b: Spans) -> Spans:
    """Addresses of ``a`` outside ``b`` (a plain sweep over both, independent of the service)."""
    out: Spans = []
    for family, first, last in a:
        start = first
        for bfam, bfirst, blast in b:
            if bfam != family or blast < start or bfirst > last:
                continue
            if bfirst > start:
                out.append((family, start, bfirst - 1))
            start = max(start, blast + 1)
        if start <= last:
            out.append((family, start, last))
    return out


def union_at(model: ArchiveModel, moment: float) -> Spans:
    """What the union of every feed of ``model`` covers at ``moment``."""
    nets: list[IpNetwork] = []
    for feed, moments in model.moments.items():
        i = bisect.bisect_right(moments, moment) - 1
        if i >= 0:
            nets += model.contents[feed][i]
    return spans(nets)


def networks(body: dict[str, list[str]]) -> list[IpNetwork]:
    return [ipaddress.ip_network(n) for n in body["ipv4"] + body["ipv6"]]


def fewest(nets: list[IpNetwork]) -> bool:
    """Whether ``nets`` are already the fewest CIDRs of what they cover."""
    collapsed = [
        *ipaddress.collapse_addresses(n for n in nets if n.version == 4),
        *ipaddress.collapse_addresses(n for n in nets if n.version == 6),
    ]
    return sorted(map(str, collapsed)) == sorted(map(str, nets))


async def check_every_version(client: httpx.AsyncClient, model: ArchiveModel) -> int:
    """For every version history holds: changes since it, applied to it, give the latest.
    Returns the latest version's number."""
    listing = (await client.get("/v1/versions", params={"limit": 1000})).json()["versions"]
    latest = listing[0]
    now = union_at(model, parse_moment(latest["at"]))
    sizes = []
    for record in listing:
        answer = await client.get("/v1/changes", params={"since": record["number"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["from"], body["to"]) == (record["number"], latest["number"])
        added, removed = networks(body["added"]), networks(body["removed"])
        assert fewest(added)
        assert fewest(removed)
        then = union_at(model, parse_moment(record["at"]))
        add, rem = spans(added), spans(removed)
        assert joined([*minus(then, rem), *add]) == now
        assert minus(add, now) == []  # only what is listed now is added...
        assert minus(rem, then) == []  # ...and only what was listed then removed
        assert minus(add, then) == add  # and neither lists what both ends list
        assert minus(rem, now) == rem
        sizes.append(len(added) + len(removed))
    assert sizes[0] == 0  # since = latest: nothing
    assert max(sizes) > 100  # the archive spans years: the oldest versions differ a lot
    return int(latest["number"])
