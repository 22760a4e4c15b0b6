"""The real Spamhaus archive of ``../shared/data`` and an independent model of it.

The model answers "was this address listed by this feed at that moment"
with nothing but :mod:`ipaddress` and the file dates, so tests compare the
service's history against something that shares none of its code.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from blocklist.history import iso_moment

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The two feeds whose 35 files make the test archive (drop: 18, edrop: 17).
ARCHIVE_FEEDS = ("drop", "edrop")


def archive_files(shared_data: Path, feed: str) -> list[Path]:
    """The dated files of one Spamhaus list, oldest first."""
    return sorted((shared_data / "spamhaus" / feed).glob(f"{feed}-*.txt"))


def file_moment(path: Path) -> float:
    """The file's date (from its name), 00:00 UTC."""
    match = re.search(r"(\d{4})-(\d{2})-(\d{2})", path.name)
    assert match
    return datetime(*map(int, match.groups()), tzinfo=UTC).timestamp()


def networks_of(path: Path) -> dict[IpNetwork, str]:
    """Every network of a Spamhaus file with its SBL label."""
    out: dict[IpNetwork, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        cidr, _, label = line.partition(";")
        out[ipaddress.ip_network(cidr.strip())] = label.strip()
    return out


@dataclass
class ArchiveModel:
    """Per feed, the dated files, each in force until the next."""

    moments: dict[str, list[float]]
    contents: dict[str, list[dict[IpNetwork, str]]]

    @classmethod
    def load(cls, files: dict[str, list[Path]]) -> ArchiveModel:
        """The model of these files."""
        return cls(
            {feed: [file_moment(p) for p in paths] for feed, paths in files.items()},
            {feed: [networks_of(p) for p in paths] for feed, paths in files.items()},
        )

    def listed(self, address: str, moment: float) -> dict[str, set[str]]:
        """Per feed listing ``address`` at ``moment``: the networks (CIDR text) containing it."""
        ip = ipaddress.ip_address(address)
        out: dict[str, set[str]] = {}
        for feed, moments in self.moments.items():
            i = bisect.bisect_right(moments, moment) - 1
            if i < 0:
                continue
            hits = {str(n) for n in self.contents[feed][i] if n.version == ip.version and ip in n}
            if hits:
                out[feed] = hits
        return out

    def sample_addresses(self, rng: random.Random, count: int) -> list[str]:
        """Addresses inside, at the edges of and next to the archive's networks."""
        nets = sorted({n for files in self.contents.values() for c in files for n in c}, key=str)
        out = []
        for net in rng.sample(nets, min(count, len(nets))):
            out += [str(net.network_address), str(net.broadcast_address)]
            if int(net.broadcast_address) + 1 < 2**net.max_prefixlen:
                out.append(str(net.broadcast_address + 1))
        return out

    def sample_moments(self) -> list[float]:
        """Every file date, a second before each, and a day after each."""
        dates = sorted({m for moments in self.moments.values() for m in moments})
        return sorted({m + d for m in dates for d in (-1.0, 0.0, 86400.0)})


async def check_point_in_time(
    client: httpx.AsyncClient, model: ArchiveModel, addresses: list[str], moments: list[float]
) -> None:
    """Every ``/v1/ip/{address}?at=`` answer names exactly the model's networks, with SBL labels."""
    for moment in moments:
        for address in addresses:
            body = (await client.get(f"/v1/ip/{address}", params={"at": iso_moment(moment)})).json()
            expected = model.listed(address, moment)
            got: dict[str, set[str]] = {}
            for match in body["matches"]:
                got.setdefault(match["feed"], set()).add(match["network"])
                assert match["label"].startswith("SBL")
            assert (body["blocked"], got) == (bool(expected), expected), (address, iso_moment(moment))
