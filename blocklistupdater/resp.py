"""Redis commands packed in bulk, and sent back to back on one connection.

redis-py packs each argument in Python (about 7 us each); a version's
ranges and a feed's first history record are hundreds of thousands of
arguments, so they are packed here directly as RESP (the wire protocol),
about 0.3 us per argument, and sent with :func:`send_packed`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from redis.asyncio import Redis

#: Arguments per packed command (a batch's replies are read after all are sent).
BATCH = 20_000


def pack_command(*args: bytes) -> bytes:
    """One command in RESP, the Redis wire protocol."""
    parts = [b"*%d\r\n" % len(args)]
    parts += [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"".join(parts)


#: Runs one command on KEYS[1] and sets the key's TTL, in one atomic step
#: (ARGV: seconds, command, then the command's arguments after the key).
_WITH_TTL = b"redis.call(ARGV[2], KEYS[1], unpack(ARGV, 3)); return redis.call('EXPIRE', KEYS[1], ARGV[1])"


def pack_with_ttl(command: bytes, key: bytes, args: Iterable[bytes], seconds: bytes) -> bytes:
    """``command key args...`` and ``EXPIRE key seconds`` as one script call: a writer
    killed at any byte leaves either no key or one that expires. Keep ``args`` short
    (the first item of a bulk write; the rest follows in :func:`pack_batches`)."""
    return pack_command(b"EVAL", _WITH_TTL, b"1", key, seconds, command, *args)


def pack_batches(command: bytes, key: bytes, items: Iterable[bytes], per_item: int) -> list[bytes]:
    """``COMMAND key item...`` in commands of at most :data:`BATCH` items.

    ``items`` yields the arguments flat (``per_item`` of them per item: 2 for
    HSET's field and value, 1 for SADD's member).
    """
    out: list[bytes] = []
    batch: list[bytes] = []
    for arg in items:
        batch.append(arg)
        if len(batch) >= BATCH * per_item:
            out.append(pack_command(command, key, *batch))
            batch = []
    if batch:
        out.append(pack_command(command, key, *batch))
    return out


async def send_packed(client: Redis, commands: Iterable[bytes]) -> None:
    """Send pre-packed commands back to back on one connection; then read every reply.

    ``commands`` may be a generator: each command is then packed while the
    previous ones are on the wire and being applied by Redis. A connection
    that fails midway is dropped, not returned to the pool half-read.
    Raises ``ResponseError`` on an error reply.
    """
    pending = iter(commands)
    first = next(pending, None)
    if first is None:
        return
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        # One write per command, each under the socket timeout: a single
        # write of a ten-million-range version would take longer than it.
        # Replies (a few bytes each) are read after the last command.
        sent = 0
        for command in itertools.chain((first,), pending):
            await connection.send_packed_command(command)
            sent += 1
        for _ in range(sent):
            await connection.read_response()
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
