"""Benchmark inputs: the ipsum snapshot, versions built as the updater builds them, synthetic feeds."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import socket
import time
from pathlib import Path

from blocklist.feedparsers import FeedFormat, parse_feed
from blocklist.index import compile_index
from blocklist.snapshot import FeedInfo, Version, checksum_of

ROOT = Path(__file__).resolve().parents[1]
IPSUM = ROOT.parent / "shared" / "data" / "ipsum" / "ipsum-2026-08-22.txt"
MAX_FEED_BYTES = 1 << 31


def ipsum_addresses() -> list[str]:
    """Every address of the ipsum snapshot, in file order."""
    return [line.split("\t")[0] for line in IPSUM.read_text().splitlines() if line[:1].isdigit()]


def ipsum_version() -> Version:
    """The ipsum snapshot as version 1, parsed and compiled as the updater does."""
    return build_version("ipsum", str(IPSUM), IPSUM.read_bytes(), FeedFormat.IPSUM)


def build_version(name: str, source: str, body: bytes, fmt: FeedFormat) -> Version:
    """Parse, compile and wrap one feed as the updater does (number 1; the publisher renumbers)."""
    parsed = parse_feed(body, fmt, max_size=MAX_FEED_BYTES)
    index = compile_index({name: (parsed.v4, parsed.v6)})
    info = FeedInfo(
        name=name,
        source=source,
        format=str(parsed.format),
        entries=parsed.entries,
        v4_entries=len(parsed.v4),
        v6_entries=len(parsed.v6),
        malformed=parsed.malformed,
        sha256=hashlib.sha256(body).hexdigest(),
        fetched_at=time.time(),
    )
    return Version(number=1, built_at=time.time(), feeds=(info,), index=index, checksum=checksum_of(index))


def synthetic_feed(entries: int, seed: int = 42) -> bytes:
    """A seeded netset: 90 % IPv4 addresses, 9 % IPv4 CIDRs /20-/30, 1 % IPv6 /48s."""
    rng = random.Random(seed)
    lines = []
    for _ in range(entries):
        kind = rng.random()
        if kind < 0.90:
            lines.append(socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big")))
        elif kind < 0.99:
            prefix = rng.randint(20, 30)
            network = (rng.getrandbits(32) >> (32 - prefix)) << (32 - prefix)
            lines.append(f"{socket.inet_ntoa(network.to_bytes(4, 'big'))}/{prefix}")
        else:
            lines.append(f"{ipaddress.IPv6Address((0x2 << 125) | (rng.getrandbits(45) << 80))}/48")
    return ("\n".join(lines) + "\n").encode()
