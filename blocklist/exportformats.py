"""The export formats: CIDR streams rendered for the tools that consume them.

:func:`render` turns the CIDRs of each family (as ``(network, prefix)``
pairs, see :func:`blocklist.aggregate.cidrs`) into byte chunks of about
:data:`CHUNK` bytes, so an export of any size streams in constant memory.
Pure (no I/O).

========  ==============================================================
plain     one CIDR per line
haproxy   one CIDR per line (``acl blocked src -f FILE``)
json      ``{"version": N, "networks": [...]}``
nginx     ``CIDR 1;`` lines for ``geo $blocklisted { default 0; include FILE; }``
nftables  for ``nft -f``: table ``inet blocklist`` with interval sets
          ``v4`` and ``v6``, flushed and refilled in one transaction
ipset     for ``ipset restore``: ``hash:net`` sets ``blocklist-v4`` and
          ``blocklist-v6`` filled as temporaries, then swapped in
========  ==============================================================
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator

Cidrs = Iterable[tuple[int, int]]

FORMATS = ("plain", "json", "nginx", "haproxy", "nftables", "ipset")
MEDIA_TYPES = {
    "plain": "text/plain; charset=utf-8",
    "haproxy": "text/plain; charset=utf-8",
    "nginx": "text/plain; charset=utf-8",
    "nftables": "text/plain; charset=utf-8",
    "ipset": "text/plain; charset=utf-8",
    "json": "application/json",
}
#: Bytes per yielded chunk (about).
CHUNK = 1 << 16
#: Elements per nftables ``add element`` statement.
NFT_BATCH = 4096
NFT_TABLE = "blocklist"
IPSET_NAMES = {4: "blocklist-v4", 6: "blocklist-v6"}
#: ``maxelem`` of the ipset sets: a cap, not an allocation; fixed so that ``create -exist`` always matches.
IPSET_MAXELEM = 1 << 28

_INET = {4: (socket.AF_INET, 4), 6: (socket.AF_INET6, 16)}


def cidr_texts(family: int, cidrs: Cidrs) -> Iterator[str]:
    """``"network/prefix"`` for each CIDR of ``family`` (4 or 6)."""
    af, width = _INET[family]
    ntop = socket.inet_ntop
    for network, prefix in cidrs:
        yield f"{ntop(af, network.to_bytes(width, 'big'))}/{prefix}"


def _chunks(lines: Iterable[str]) -> Iterator[bytes]:
    """``lines`` joined into byte chunks of about :data:`CHUNK` bytes (the last may be shorter)."""
    pending: list[str] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= CHUNK:
            yield "".join(pending).encode()
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode()


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _plain(number: int, families: dict[int, Cidrs]) -> Iterator[str]:
    for family, cidrs in families.items():
        for text in cidr_texts(family, cidrs):
            yield text + "\n"


def _nginx(number: int, families: dict[int, Cidrs]) -> Iterator[str]:
    yield f"# blocklist version {number}: geo $blocklisted {{ default 0; include THIS_FILE; }}\n"
    for family, cidrs in families.items():
        for text in cidr_texts(family, cidrs):
            yield text + " 1;\n"


def _json(number: int, families: dict[int, Cidrs]) -> Iterator[str]:
    yield f'{{"version":{number},"networks":['
    separator = ""
    for family, cidrs in families.items():
        for text in cidr_texts(family, cidrs):
            yield f'{separator}"{text}"'
            separator = ","
    yield "]}\n"


def _nftables(number: int, families: dict[int, Cidrs]) -> Iterator[str]:
    names = {4: ("v4", "ipv4_addr"), 6: ("v6", "ipv6_addr")}
    yield f"# blocklist version {number}; load with: nft -f FILE (one transaction)\n"
    yield f"table inet {NFT_TABLE} {{\n"
    for family in families:
        name, kind = names[family]
        yield f"\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n\t}}\n"
    yield "}\n"
    for family in families:
        yield f"flush set inet {NFT_TABLE} {names[family][0]}\n"
    for family, cidrs in families.items():
        for batch in _batched(cidr_texts(family, cidrs), NFT_BATCH):
            yield f"add element inet {NFT_TABLE} {names[family][0]} {{ {', '.join(batch)} }}\n"


def _ipset(number: int, families: dict[int, Cidrs]) -> Iterator[str]:
    yield f"# blocklist version {number}; load with: ipset restore -file FILE\n"
    for family, cidrs in families.items():
        name = IPSET_NAMES[family]
        spec = f"hash:net family {'inet' if family == 4 else 'inet6'} maxelem {IPSET_MAXELEM}"
        yield f"create {name}-new {spec} -exist\n"
        yield f"flush {name}-new\n"
        for text in cidr_texts(family, cidrs):
            yield f"add {name}-new {text}\n"
        yield f"create {name} {spec} -exist\n"
        yield f"swap {name}-new {name}\n"
        yield f"destroy {name}-new\n"


_RENDERERS: dict[str, Callable[[int, dict[int, Cidrs]], Iterator[str]]] = {
    "plain": _plain,
    "haproxy": _plain,
    "json": _json,
    "nginx": _nginx,
    "nftables": _nftables,
    "ipset": _ipset,
}


def render(fmt: str, number: int, families: dict[int, Cidrs]) -> Iterator[bytes]:
    """The export of version ``number`` in ``fmt`` (one of :data:`FORMATS`) as byte chunks.

    ``families`` maps 4 and/or 6 to that family's CIDRs, in the order they
    are written. Raises ``KeyError`` for an unknown format.
    """
    return _chunks(_RENDERERS[fmt](number, families))
