"""What ``redis-cli --pipe`` takes to load a version's keys, to compare ``publish()`` with.

:func:`write_protocol` writes, as RESP, the commands that build exactly the
live keys a publish into an empty Redis leaves behind: the snapshot string
and its history copy (``SET``), the meta hash (``HSET``), the history sorted
set (``ZADD``) and the two range sorted sets, packed by the publisher's own
:func:`~blocklistupdater.redispublish.range_commands` (same members, same
batches). None of the publish's own work is in it (temporary keys, TTLs,
the lock, the swap script): that is what the comparison measures.
:func:`end_state` reads back what either left, so a run can check that both
hold the same keys, members and values before comparing their times.

Used by :mod:`bench.scale`, which alternates the two and reports the ratio.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from blocklist import rediskeys as keys
from blocklist.snapshot import Version, encode_version
from blocklistupdater.redispublish import meta_fields, range_commands
from blocklistupdater.resp import pack_command

#: Members read back per family to compare end states (plus the first and the last).
SAMPLE = 500


def _arg(value: object) -> bytes:
    """An argument encoded as redis-py encodes it (numbers by ``repr``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"cannot encode {type(value).__name__}")


def protocol(version: Version) -> Iterator[bytes]:
    """The commands, in RESP, that leave the keys a publish of ``version`` into an empty Redis leaves."""
    number = version.number
    data = encode_version(version)
    yield pack_command(b"SET", keys.SNAPSHOT.encode(), data)
    yield pack_command(b"SET", keys.history_snapshot_key(number).encode(), data)
    del data
    fields = [_arg(x) for pair in meta_fields(version).items() for x in pair]
    yield pack_command(b"HSET", keys.META.encode(), *fields)
    yield pack_command(b"ZADD", keys.HISTORY.encode(), _arg(number), _arg(str(number)))
    for family, fam in ((4, version.index.v4), (6, version.index.v6)):
        yield from range_commands(keys.ranges_key(family).encode(), family, fam.firsts, fam.lasts)


def write_protocol(version: Version, path: Path) -> int:
    """Write :func:`protocol` of ``version`` to ``path``; bytes written."""
    size = 0
    with path.open("wb") as out:
        for command in protocol(version):
            size += out.write(command)
    return size


def run_pipe(port: int, path: Path) -> float:
    """Seconds ``redis-cli -p PORT --pipe < path`` takes; raises if Redis answered any error."""
    with path.open("rb") as stdin:
        begin = time.perf_counter()
        done = subprocess.run(
            ["redis-cli", "-p", str(port), "--pipe"], stdin=stdin, capture_output=True, check=True
        )
        seconds = time.perf_counter() - begin
    summary = re.search(rb"errors: (\d+), replies: (\d+)", done.stdout)
    if summary is None or int(summary[1]):
        raise SystemExit(f"redis-cli --pipe failed: {done.stdout[-500:]!r} {done.stderr[-500:]!r}")
    return seconds


def sample_ranks(version: Version, seed: int) -> dict[int, list[int]]:
    """Seeded ranks per family to read back: the first, the last and :data:`SAMPLE` in between."""
    rng = random.Random(seed)
    out: dict[int, list[int]] = {}
    for family, fam in ((4, version.index.v4), (6, version.index.v6)):
        n = len(fam)
        out[family] = sorted({0, n - 1, *(rng.randrange(n) for _ in range(SAMPLE))}) if n else []
    return out


def expected_members(version: Version, ranks: dict[int, list[int]]) -> dict[int, list[bytes]]:
    """The members at ``ranks``, from the index (lexical order is address order: fixed-width hex)."""
    out: dict[int, list[bytes]] = {}
    for family, fam in ((4, version.index.v4), (6, version.index.v6)):
        out[family] = [keys.encode_range(family, fam.firsts[i], fam.lasts[i]).encode() for i in ranks[family]]
    return out


def end_state(client: redis.Redis, ranks: dict[int, list[int]]) -> dict[str, Any]:
    """What Redis holds: keys with type and TTL, ZCARDs, sampled members, meta, history, digests."""
    names = sorted(client.scan_iter(count=1000))
    state: dict[str, Any] = {
        "keys": [(n.decode(), client.type(n).decode(), int(client.ttl(n))) for n in names],
        "meta": sorted(client.hgetall(keys.META).items()),
        "history": client.zrange(keys.HISTORY, 0, -1, withscores=True),
    }
    for name in names:
        if client.type(name) == b"string":
            state[f"sha256:{name.decode()}"] = hashlib.sha256(client.get(name) or b"").hexdigest()
    for family, wanted in ranks.items():
        key = keys.ranges_key(family)
        state[f"zcard{family}"] = int(client.zcard(key))
        pipe = client.pipeline(transaction=False)
        for rank in wanted:
            pipe.zrange(key, rank, rank)
        state[f"members{family}"] = [m for found in pipe.execute() for m in found]
    return state


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the parts of two :func:`end_state` results that differ."""
    return [name for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
