"""Publishing versions to Redis (fakeredis): atomic swap, lookups, lock, history."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from array import array
from collections.abc import Awaitable, Callable, Iterator

import fakeredis
import numpy as np
import pytest
from redis.exceptions import ResponseError

from blocklist import rediskeys as keys
from blocklist.addresses import V4, V6, parse_network
from blocklist.feedparsers import FamilyEntries
from blocklist.history import FeedContent, FeedRow, feed_members, key_network
from blocklist.historyredis import RedisHistoryReader
from blocklist.snapshot import Version, decode_version
from blocklist.u128 import U128Array
from blocklistupdater import redispublish
from blocklistupdater.redispublish import (
    PublishError,
    RedisPublisher,
    format_members,
    range_commands,
    v4_members,
    zadd_command,
)
from blocklistupdater.resp import pack_command, pack_with_ttl, send_packed
from tests.versions import make_version


def with_redis(test: Callable[[fakeredis.FakeAsyncRedis], Awaitable[None]]) -> None:
    async def scenario() -> None:
        client = fakeredis.FakeAsyncRedis()
        try:
            await test(client)
        finally:
            await client.aclose()

    asyncio.run(scenario())


async def live_lookup(client: fakeredis.FakeAsyncRedis, family: int, value: int) -> bool:
    found = await client.zrange(
        keys.ranges_key(family), keys.lookup_bound(family, value), "-", bylex=True, desc=True, offset=0, num=1
    )
    return bool(found) and keys.member_contains(found[0], value)


def test_published_version_is_live_whole_and_temp_keys_are_gone() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        version = make_version(1, "1.2.3.4", "10.0.0.0/8", "2001:db8::/32")
        await RedisPublisher(client).publish(version)
        snapshot = decode_version(await client.get(keys.SNAPSHOT))
        assert snapshot.checksum == version.checksum
        assert int(await client.hget(keys.META, "number")) == 1
        assert await client.ttl(keys.SNAPSHOT) == -1
        assert await client.ttl(keys.ranges_key(4)) == -1
        assert [k async for k in client.scan_iter(keys.PREFIX + "tmp:*")] == []

    with_redis(test)


def test_sorted_set_lookup_agrees_with_the_index() -> None:
    """One ZRANGE BYLEX REV round trip gives the same answer as the compiled index."""
    rng = random.Random(3)
    entries = [f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24" for _ in range(300)]
    entries += [f"{rng.randrange(256)}.{rng.randrange(256)}.1.{rng.randrange(256)}" for _ in range(300)]
    entries += ["2001:db8::/48", "2001:db8:1::1"]
    version = make_version(1, *entries)

    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        await RedisPublisher(client).publish(version)
        probes = [(V4, rng.getrandbits(32)) for _ in range(500)]
        probes += [(V4, version.index.v4.firsts[i]) for i in range(0, len(version.index.v4), 7)]
        probes += [(V4, version.index.v4.lasts[i] + 1) for i in range(0, len(version.index.v4), 7)]
        probes += [(V6, 0x20010DB8 << 96), (V6, (0x20010DB8 << 96) | (1 << 80)), (V6, 1)]
        for family, value in probes:
            assert await live_lookup(client, family, value) == version.index.contains(family, value)

    with_redis(test)


def test_new_version_replaces_ranges_including_an_emptied_family() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client)
        await publisher.publish(make_version(1, "1.2.3.4", "2001:db8::1"))
        await publisher.publish(make_version(2, "5.6.7.8"))
        assert await live_lookup(client, V4, 0x05060708)
        assert not await live_lookup(client, V4, 0x01020304)
        assert not await client.exists(keys.ranges_key(6))

    with_redis(test)


def test_announcement_carries_the_number() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        pubsub = client.pubsub()
        await pubsub.subscribe(keys.ANNOUNCE)
        await pubsub.get_message(timeout=1)  # subscribe confirmation
        await RedisPublisher(client).publish(make_version(7, "1.2.3.4"))
        message = await pubsub.get_message(timeout=1)
        assert message is not None
        assert message["data"] == b"7"
        await pubsub.aclose()

    with_redis(test)


def test_history_keeps_only_the_last_versions() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client, keep_versions=3)
        for number in range(1, 7):
            await publisher.publish(make_version(number, f"1.2.3.{number}"))
        kept = [int(n) for n in await client.zrange(keys.HISTORY, 0, -1)]
        assert kept == [4, 5, 6]
        assert not await client.exists(keys.history_snapshot_key(3))
        older = decode_version(await client.get(keys.history_snapshot_key(4)))
        assert older.number == 4

    with_redis(test)


def test_version_not_above_the_live_one_is_renumbered_above_it() -> None:
    """Another updater published meanwhile: numbers still only grow."""

    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client)
        await publisher.publish(make_version(5, "1.2.3.4"))
        published = await publisher.publish(make_version(5, "9.9.9.9"))
        assert published.number == 6
        assert int(await client.hget(keys.META, "number")) == 6
        assert decode_version(await client.get(keys.SNAPSHOT)).number == 6
        assert await live_lookup(client, V4, 0x09090909)

    with_redis(test)


def test_second_publisher_waits_then_gives_up_while_the_lock_is_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        held = client.lock(keys.PUBLISH_LOCK, timeout=30)
        assert await held.acquire()
        with caplog.at_level(logging.INFO), pytest.raises(PublishError, match="lock"):
            await RedisPublisher(client, lock_wait=0.1).publish(make_version(1, "1.2.3.4"))
        assert not await client.exists(keys.SNAPSHOT)
        await held.release()

    with_redis(test)
    messages = [r.getMessage() for r in caplog.records]
    assert "another updater holds the publish lock; waiting" in messages
    assert "publish lock still held by another updater; not published, retried later" in messages


def test_second_publisher_publishes_once_the_holder_releases_the_lock() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        held = client.lock(keys.PUBLISH_LOCK, timeout=30)
        assert await held.acquire()

        async def release_soon() -> None:
            await asyncio.sleep(0.2)
            await held.release()

        releaser = asyncio.create_task(release_soon())
        published = await RedisPublisher(client, lock_wait=5).publish(make_version(1, "1.2.3.4"))
        await releaser
        assert published.number == 1
        assert int(await client.hget(keys.META, "number")) == 1

    with_redis(test)


def test_crash_before_the_swap_leaves_live_intact_and_temp_keys_expiring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client, temp_ttl=60)
        await publisher.publish(make_version(1, "1.2.3.4"))

        async def crash(*args: object) -> None:
            raise ConnectionError("updater died")

        monkeypatch.setattr(publisher, "_swap", crash)
        with pytest.raises(ConnectionError):
            await publisher.publish(make_version(2, "9.9.9.9"))
        assert int(await client.hget(keys.META, "number")) == 1
        assert await live_lookup(client, V4, 0x01020304)
        assert not await live_lookup(client, V4, 0x09090909)
        temp = [k async for k in client.scan_iter(keys.PREFIX + "tmp:*")]
        assert temp
        for key in temp:
            assert 0 < await client.ttl(key) <= 60
        # The lock was released: the next publish goes through.
        monkeypatch.undo()
        await publisher.publish(make_version(2, "9.9.9.9"))
        assert await live_lookup(client, V4, 0x09090909)

    with_redis(test)


def test_swap_with_a_vanished_temporary_key_changes_nothing_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """MULTI/EXEC would apply the other RENAMEs; the swap script applies none."""

    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client)
        await publisher.publish(make_version(1, "1.2.3.4"))
        write_temp = publisher._write_temp

        async def write_then_lose_one(token: str, version: Version) -> set[str]:
            written = await write_temp(token, version)
            await client.delete(keys.temp_key(token, "snapshot"))  # expired or evicted
            return written

        monkeypatch.setattr(publisher, "_write_temp", write_then_lose_one)
        with pytest.raises(PublishError, match="temporary key missing"):
            await publisher.publish(make_version(2, "9.9.9.9"))
        assert int(await client.hget(keys.META, "number")) == 1
        assert decode_version(await client.get(keys.SNAPSHOT)).number == 1
        assert not await live_lookup(client, V4, 0x09090909)
        assert await live_lookup(client, V4, 0x01020304)

    with_redis(test)


def test_packed_zadd_members_are_the_encoded_ranges() -> None:
    """The bulk RESP packing writes exactly the members lookups search for."""
    v4 = ([0, 0x01020304, 0xFFFFFFFF], [0xFF, 0x01020304, 0xFFFFFFFF])
    v6 = ([0x20010DB8 << 96], [(0x20010DB8 << 96) | ((1 << 96) - 1)])
    for family, (firsts, lasts) in ((4, v4), (6, v6)):
        args: list[bytes] = [b"ZADD", b"k"]
        for first, last in zip(firsts, lasts, strict=True):
            args += [b"0", keys.encode_range(family, first, last).encode()]
        want = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        assert zadd_command(b"k", family, firsts, lasts) == want


def test_vectorised_ipv4_members_equal_the_per_range_format() -> None:
    """numpy's packing is byte for byte the ``%08x-%08x`` format, from any kind of bounds."""
    rng = random.Random(11)
    edges = [0, 1, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
    firsts = edges + edges[::-1] + [rng.getrandbits(32) for _ in range(5000)]
    lasts = edges[::-1] + edges + [rng.getrandbits(32) for _ in range(5000)]
    want = format_members(4, firsts, lasts)
    assert want.startswith(b"$1\r\n0\r\n$17\r\n00000000-ffffffff\r\n$1\r\n0\r\n$17\r\n00000001-fffffffe\r\n")
    bounds = (array("I", firsts), array("I", lasts))
    assert v4_members(*bounds) == want
    assert v4_members(firsts, lasts) == want
    assert v4_members(np.array(firsts, dtype=np.uint32), np.array(lasts, dtype=np.uint32)) == want
    assert v4_members(array("I"), array("I")) == b""
    assert zadd_command(b"k", 4, *bounds) == zadd_command(b"k", 4, firsts, lasts)
    with pytest.raises(ValueError, match="length"):
        v4_members([1, 2], [3])
    with pytest.raises(OverflowError):
        v4_members([1 << 32], [1 << 32])
    with pytest.raises(TypeError, match="uint32"):
        v4_members(np.array([1], dtype=np.int64), np.array([1], dtype=np.int64))


def test_range_commands_batch_like_the_per_range_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redispublish, "BATCH", 7)
    rng = random.Random(5)
    firsts = sorted(rng.sample(range((1 << 32) - 2), 50))
    v4 = (array("I", firsts), array("I", [f + rng.randrange(3) for f in firsts]))
    v6 = (U128Array.of([f << 96 for f in firsts]), U128Array.of([(f << 96) | 0xFFFF for f in firsts]))
    for family, (first, last) in ((4, v4), (6, v6)):
        commands = list(range_commands(b"k", family, first, last))
        assert len(commands) == 8  # 7 batches of 7, then 1
        member = {4: b"$1\r\n0\r\n$17\r\n%08x-%08x\r\n", 6: b"$1\r\n0\r\n$65\r\n%032x-%032x\r\n"}[family]
        for i, command in enumerate(commands):
            pairs = list(zip(first, last, strict=True))[7 * i : 7 * i + 7]
            head = b"*%d\r\n$4\r\nZADD\r\n$1\r\nk\r\n" % (2 + 2 * len(pairs))
            assert command == head + b"".join(member % pair for pair in pairs)


def test_a_version_published_in_many_batches_holds_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are packed while earlier ones are sent: the sets still hold every range, no TTL."""
    monkeypatch.setattr(redispublish, "BATCH", 64)
    rng = random.Random(9)
    networks = {
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{2 * rng.randrange(128)}.0/24" for _ in range(700)
    }
    entries = sorted(networks) + [f"2001:db8:{2 * i:x}::/48" for i in range(150)]
    version = make_version(1, *entries)

    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        await RedisPublisher(client).publish(version)
        for family, fam in ((V4, version.index.v4), (V6, version.index.v6)):
            want = [
                keys.encode_range(family, f, la).encode() for f, la in zip(fam.firsts, fam.lasts, strict=True)
            ]
            assert len(want) > 2 * 64
            assert await client.zrange(keys.ranges_key(family), 0, -1) == want
            assert await client.ttl(keys.ranges_key(family)) == -1

    with_redis(test)


def test_send_packed_takes_a_generator_and_reads_every_reply() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        packed: list[int] = []

        def commands() -> Iterator[bytes]:
            for i in range(5):
                packed.append(i)
                yield pack_command(b"SET", b"k%d" % i, b"%d" % i)

        await send_packed(client, commands())
        assert packed == [0, 1, 2, 3, 4]
        assert await client.mget([f"k{i}" for i in range(5)]) == [b"0", b"1", b"2", b"3", b"4"]
        await send_packed(client, iter([]))  # nothing to send: no connection taken
        with pytest.raises(ResponseError):
            await send_packed(
                client, iter([pack_command(b"INCR", b"k0"), pack_command(b"HSET", b"k1", b"f")])
            )

    with_redis(test)


def with_history(number: int, *entries: str) -> Version:
    """``make_version`` carrying what history records of its one feed ``f``."""
    version = make_version(number, *entries)
    v4, v6 = FamilyEntries(), FamilyEntries()
    for text in entries:
        family, first, last = parse_network(text)
        (v4 if family == V4 else v6).append(first, last, 0, f"label {text}")
    content = FeedContent(feed_members(v4, v6), FeedRow(len(entries)))
    return dataclasses.replace(version, history={"f": content})


def test_concurrent_publishes_record_history_in_number_order() -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        publisher = RedisPublisher(client)
        await publisher.publish(with_history(1, "10.0.0.0/8"))
        # Both prepare against version 1's state; the second to take the lock
        # finds it moved and prepares again.
        second, third = await asyncio.gather(
            publisher.publish(with_history(2, "10.0.0.0/8", "192.0.2.0/24")),
            publisher.publish(with_history(2, "198.51.100.7")),
        )
        assert sorted([second.number, third.number]) == [2, 3]
        last = max((second, third), key=lambda v: v.number)
        reader = RedisHistoryReader(client)
        catalog = await reader.catalog()
        assert [v.number for v in catalog.versions] == [1, 2, 3]
        opens = await reader.opens("f")
        assert sorted(map(key_network, opens)) == sorted(
            ["10.0.0.0/8", "192.0.2.0/24"] if last is second else ["198.51.100.7/32"]
        )
        assert all(label.startswith("label ") for label, _ in opens.values())

    with_redis(test)


def test_a_publish_longer_than_the_lock_ttl_keeps_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is renewed while publishing: a second updater cannot start over a slow publish."""

    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        slow = RedisPublisher(client, lock_timeout=0.3)
        write_temp = slow._write_temp

        async def write_slowly(token: str, version: Version) -> set[str]:
            await asyncio.sleep(1.0)  # more than three lock lifetimes
            return await write_temp(token, version)

        monkeypatch.setattr(slow, "_write_temp", write_slowly)
        publishing = asyncio.create_task(slow.publish(make_version(1, "1.2.3.4")))
        await asyncio.sleep(0.7)
        with pytest.raises(PublishError, match="holds the publish lock"):
            await RedisPublisher(client, lock_wait=0.1).publish(make_version(5, "9.9.9.9"))
        published = await publishing
        assert published.number == 1
        assert int(await client.hget(keys.META, "number")) == 1
        assert not await client.exists(keys.PUBLISH_LOCK)  # released at the end

    with_redis(test)


def test_a_publisher_that_lost_the_lock_never_swaps(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test(client: fakeredis.FakeAsyncRedis) -> None:
        await RedisPublisher(client).publish(make_version(1, "1.2.3.4"))
        stalled = RedisPublisher(client)
        write_temp = stalled._write_temp

        async def lose_the_lock(token: str, version: Version) -> set[str]:
            written = await write_temp(token, version)
            # Its lock expired (a stalled process) and another updater took it.
            await client.set(keys.PUBLISH_LOCK, b"someone-else")
            return written

        monkeypatch.setattr(stalled, "_write_temp", lose_the_lock)
        with pytest.raises(PublishError, match="publish lock lost"):
            await stalled.publish(make_version(2, "9.9.9.9"))
        assert int(await client.hget(keys.META, "number")) == 1
        assert not await live_lookup(client, V4, 0x09090909)
        assert await client.get(keys.PUBLISH_LOCK) == b"someone-else"  # not released by the loser

    with_redis(test)


@pytest.mark.parametrize(
    ("command", "args", "kind"),
    [(b"ZADD", (b"0", b"m"), "zset"), (b"HSET", (b"f", b"v"), "hash"), (b"SADD", (b"m",), "set")],
)
def test_a_key_written_with_its_ttl_gets_both_in_one_command(
    command: bytes, args: tuple[bytes, ...], kind: str
) -> None:
    """The first write of every temporary key carries its TTL: a writer killed after any
    whole command leaves no key that never expires."""

    async def go() -> None:
        client = fakeredis.FakeAsyncRedis()
        raw = pack_with_ttl(command, b"k", args, b"60")
        parts = raw.split(b"\r\n")[2::2][: int(raw.split(b"\r\n")[0][1:])]
        assert await client.execute_command(*parts) == 1
        assert await client.type("k") == kind.encode()
        assert 0 < await client.ttl("k") <= 60
        await client.aclose()

    asyncio.run(go())
