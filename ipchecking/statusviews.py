"""How a version and its feeds are shown in ``/status``, whatever the mode."""

from __future__ import annotations

import time
from typing import Any


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def version_summary(
    number: int, built_at: float, *, checksum: str | None, ranges: tuple[int, int], bootstrap: bool
) -> dict[str, Any]:
    """The ``version`` object of ``/status``; ``ranges`` is (IPv4, IPv6) counts."""
    return {
        "number": number,
        "built_at": iso(built_at),
        "age_s": round(time.time() - built_at, 3),
        "checksum": checksum,
        "ranges": {"ipv4": ranges[0], "ipv6": ranges[1]},
        "bootstrap": bootstrap,
    }


def feed_summary(info: dict[str, Any]) -> dict[str, Any]:
    """One feed of ``/status`` in distributed mode, from a FeedInfo as a dict."""
    return {
        "source": info.get("source"),
        "entries": info.get("entries", 0),
        "fetched_at": iso(info.get("fetched_at")),
        "stale": bool(info.get("bootstrap", False)),
        "validators": {k: info.get(k) for k in ("etag", "last_modified", "sha256")},
    }
