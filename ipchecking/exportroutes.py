"""``GET /v1/export``: the served networks for nginx, HAProxy, nftables, ipset and scripts.

What is exported is what ``/check_ip`` blocks from the feeds and the
overrides: the version's ranges (one feed's with ``feed=``), plus active
manual blocks (not with ``feed=``), minus active allows, merged and split
into the fewest CIDRs. Reputation blocks are not exported: they are
per-address and short-lived, and an edge file would lag them.

The answer streams (rendered in a thread, 64 KiB at a time, from the
version and the override ranges taken when the request arrived). ``ETag``
names the data (version, active overrides, parameters): ``If-None-Match``
gets a 304 that computes nothing but the tag, which is memoised until the
overrides change or one expires. ``Cache-Control: max-age`` runs to the
next scheduled refresh, capped by ``BLOCKLIST_CACHE_MAX_AGE`` so an
override reaches caches within that bound.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from blocklist.addresses import MAX_BITS, V4, V6
from blocklist.aggregate import cidrs, merged, subtract, union
from blocklist.decision import ControlView
from blocklist.exportformats import MEDIA_TYPES, Cidrs, render
from blocklist.index import FamilyIndex
from blocklist.settings import Settings
from blocklist.snapshot import Version
from ipchecking.holder import VersionHolder
from ipchecking.routes import ErrorBody

router = APIRouter(prefix="/v1", tags=["consumers"])

Format = Literal["plain", "json", "nginx", "haproxy", "nftables", "ipset"]


class OverrideTag:
    """A digest of the active overrides, memoised while the held set and ``now`` leave it unchanged."""

    def __init__(self) -> None:
        self._held: object = None
        self._until = -math.inf
        self._value = ("", 0.0)

    def of(self, view: ControlView, now: float) -> tuple[str, float]:
        """``(digest, last change)`` of the overrides active at ``now``. O(1) while memoised,
        else O(n log n)."""
        held = view.overrides
        if held is self._held and now < self._until:
            return self._value
        active = sorted((o.id, o.action, o.network, o.expires_at) for o in held.values() if o.active(now))
        ended = [o.expires_at for o in held.values() if o.expires_at is not None and o.expires_at <= now]
        upcoming = [o.expires_at for o in held.values() if o.expires_at is not None and o.expires_at > now]
        digest = hashlib.sha256(repr(active).encode()).hexdigest()[:16]
        self._value = (digest, max([view.overrides_changed_at, *ended]))
        self._held, self._until = held, min(upcoming, default=math.inf)
        return self._value


def seconds_to_refresh(settings: Settings, built_at: float, now: float) -> float:
    """Seconds until the next scheduled refresh, counted in whole intervals from ``built_at``
    (a sync that finds the same content builds no new version)."""
    interval = min((settings.interval_for(f) for f in settings.feeds), default=settings.refresh_interval)
    return interval - (now - built_at) % interval if interval > 0 else 0.0


def _family_ranges(fam: FamilyIndex, bit: int | None) -> Iterator[tuple[int, int]]:
    if bit is None:
        return zip(fam.firsts, fam.lasts, strict=True)
    return ((f, la) for f, la, m in zip(fam.firsts, fam.lasts, fam.masks, strict=True) if m >> bit & 1)


def exported_cidrs(
    version: Version, view: ControlView, family: int, bit: int | None, now: float
) -> Iterator[tuple[int, int]]:
    """The CIDRs of ``family`` exported (see the module docstring); ``bit``: one feed's only.

    The override ranges are read now; the version's ranges as the stream is consumed.
    """
    fam = version.index.v4 if family == V4 else version.index.v6
    ranges: Iterator[tuple[int, int]] = merged(_family_ranges(fam, bit))
    if bit is None:
        ranges = union(ranges, view.override_ranges(family, "block", now))
    return cidrs(subtract(ranges, view.override_ranges(family, "allow", now)), MAX_BITS[family])


def _matches(header: str, tag: str) -> bool:
    """RFC 9110 If-None-Match (weak comparison): ``*`` or any listed tag."""
    wanted = tag.removeprefix("W/")
    return any(
        t.strip() in {"*", wanted} or t.strip().removeprefix("W/") == wanted for t in header.split(",")
    )


def _not_modified_since(header: str, modified: float) -> bool:
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return math.floor(modified) <= since


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status, {"cache-control": "no-store"})


@router.head("/export", include_in_schema=False)
@router.get(
    "/export",
    summary="The blocked networks for nginx, HAProxy, nftables, ipset or scripts.",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The networks in the format asked for, streamed.",
            "content": {m: {} for m in sorted(set(MEDIA_TYPES.values()))},
        },
        304: {"description": "The data named by If-None-Match (or not changed since If-Modified-Since)."},
        404: {"model": ErrorBody, "description": "``feed`` names no feed of the served version."},
        422: {"model": ErrorBody, "description": "An unknown format or family."},
        503: {
            "model": ErrorBody,
            "description": "No version is loaded yet, or lookups are live (no local copy).",
        },
    },
)
async def export(
    request: Request,
    format: Annotated[Format, Query(description="How the networks are written.")],
    feed: Annotated[
        str | None, Query(description="Only this feed's networks (overrides: allows only).")
    ] = None,
    family: Annotated[Literal["4", "6"] | None, Query(description="Only IPv4 or only IPv6.")] = None,
) -> Response:
    """The networks ``/check_ip`` blocks from the feeds and overrides, aggregated into the fewest
    CIDRs, in ``format``; see the README for each consumer's configuration."""
    holder: VersionHolder = request.app.state.holder
    settings: Settings = request.app.state.settings
    if request.app.state.live is not None:
        return _error(503, "no_local_copy", "exports need local lookups (BLOCKLIST_LOOKUP=local)")
    served = holder.served
    if served is None:
        return _error(503, "no_data", "no blocklist version is loaded yet; retry shortly")
    version = served.version
    bit = None
    if feed is not None:
        names = version.index.feed_names
        if feed not in names:
            return _error(404, "unknown_feed", f"no such feed; the feeds are: {', '.join(names)}")
        bit = names.index(feed)
    now = holder.control.clock()  # the clock overrides expire by
    tags: OverrideTag = request.app.state.export_tags
    digest, changed = tags.of(holder.control, now)
    params = hashlib.sha256(f"{format}|{family}|{feed}".encode()).hexdigest()[:8]
    etag = f'"{version.number}-{digest}-{params}"'
    modified = max(version.built_at, changed)
    max_age = min(settings.cache_max_age, math.ceil(seconds_to_refresh(settings, version.built_at, now)))
    headers = {
        "etag": etag,
        "last-modified": formatdate(modified, usegmt=True),
        "cache-control": f"public, max-age={max_age}" if max_age > 0 else "no-cache",
        "x-blocklist-version": str(version.number),
    }
    match = request.headers.get("if-none-match")
    since = request.headers.get("if-modified-since")
    if (match is not None and _matches(match, etag)) or (
        match is None and since is not None and _not_modified_since(since, modified)
    ):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        return Response(headers=headers, media_type=MEDIA_TYPES[format])
    families: dict[int, Cidrs] = {
        f: exported_cidrs(version, holder.control, f, bit, now) for f in (V4, V6) if family in (None, str(f))
    }
    return StreamingResponse(
        render(format, version.number, families), headers=headers, media_type=MEDIA_TYPES[format]
    )
