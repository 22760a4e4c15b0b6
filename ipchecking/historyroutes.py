"""The ``/v1`` explain and history API: why an address is listed, and what was listed when.

``GET /v1/ip/{ip}`` explains the current answer (``?at=`` a past one),
``/v1/ip/{ip}/history`` lists every listing interval, and ``/v1/versions``
the catalog with diffs between versions. Everything comes from history
(:mod:`blocklist.history`) through the mode's :class:`HistorySource`; the
current answer's ``blocked`` comes from the served version, like
``/check_ip``. Labels are feed text: returned as JSON strings, never markup.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from blocklist.addresses import V4, format_address, parse_address
from blocklist.errors import InvalidAddress
from blocklist.history import (
    Catalog,
    Match,
    VersionRecord,
    address_keys,
    cidr_pieces,
    iso_moment,
    key_network,
    listings,
    matches_at,
    parse_moment,
)
from blocklist.settings import Settings
from ipchecking.controlservice import ControlService, override_body
from ipchecking.historysource import HistorySource, Lookups
from ipchecking.holder import VersionHolder
from ipchecking.routes import ErrorBody, HolderDep, IpParam

router = APIRouter(prefix="/v1", tags=["explain and history"])

_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Not a valid address, `at` or page."}
}
LimitParam = Annotated[int, Query(ge=1, le=10_000, description="Items per page.")]
OffsetParam = Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")]


class MatchBody(BaseModel):
    """One feed entry containing the address."""

    feed: str
    network: str = Field(description="The feed's own network (a CIDR), not the merged range.")
    label: str = Field(description="The feed's label for the entry (SBL id, ipsum count, comment).")
    score: int
    listed_since: str | None = Field(description="Since when this feed has listed the address without a gap.")


class ExplainBody(BaseModel):
    """Whether the address is (or was, at ``at``) blocked, and why."""

    ip: str
    blocked: bool
    at: str | None = Field(default=None, description="The moment asked about; null: now.")
    version: int | None = Field(description="The version in force; null before the first one.")
    built_at: str | None
    matches: list[MatchBody]
    overrides: list[dict[str, Any]] = Field(
        default_factory=list, description="Active overrides holding the address, allows first (now only)."
    )
    reputation: dict[str, Any] | None = Field(
        default=None, description="Reported reputation: score, blocked_until, the last reports (now only)."
    )
    decided_by: str | None = Field(
        default=None,
        description="What decided `blocked`: allow, block (overrides), reputation, feeds; null: none.",
    )


class ListingBody(BaseModel):
    """An interval during which a feed listed a network holding the address."""

    feed: str
    network: str
    label: str
    from_: str = Field(alias="from")
    to: str | None = Field(description="null while still listed.")


class HistoryBody(BaseModel):
    """Every listing interval of an address, newest first."""

    ip: str
    total: int
    offset: int
    next_offset: int | None
    intervals: list[ListingBody]


class VersionBody(BaseModel):
    """One version: when it came into force and what each feed listed."""

    number: int
    kind: str = Field(description="sync, bootstrap (bundled data) or import (an archive).")
    at: str = Field(description="When it came into force (built, or the archive's date).")
    recorded_at: str
    feeds: dict[str, int] = Field(description="Networks each feed listed while it was in force.")
    imported: dict[str, str | None] = Field(description="For an import: the file each feed came from.")


class VersionsBody(BaseModel):
    """The catalog, newest first."""

    total: int
    offset: int
    next_offset: int | None
    horizon: str | None = Field(description="History before this moment is purged.")
    versions: list[VersionBody]


class ChangeBody(BaseModel):
    """A network added to or removed from one feed."""

    feed: str
    network: str
    change: str = Field(description="added or removed")


class DiffBody(BaseModel):
    """What changed between two versions, per feed."""

    from_: int = Field(alias="from")
    to: int
    summary: dict[str, dict[str, int]]
    total: int
    offset: int
    next_offset: int | None
    changes: list[ChangeBody]


async def get_source(request: Request) -> HistorySource:
    """The mode's history source."""
    source: HistorySource = request.app.state.history
    return source


SourceDep = Annotated[HistorySource, Depends(get_source)]


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


def horizon_of(settings: Settings, catalog: Catalog, now: float) -> float | None:
    """Before this, answers are purged: the stored horizon or now minus the strictest retention."""
    retentions = [r for r in (settings.retention_for(f) for f in catalog.feeds()) if r > 0]
    computed = float(math.floor(now - min(retentions))) if retentions else None
    return max(filter(None, (catalog.horizon, computed)), default=None)


def _match_body(match: Match) -> MatchBody:
    return MatchBody(
        feed=match.feed,
        network=match.network,
        label=match.label,
        score=match.score,
        listed_since=iso_moment(match.listed_since),
    )


def _page(total: int, offset: int, limit: int) -> int | None:
    return offset + limit if offset + limit < total else None


@router.get(
    "/ip/{ip}",
    summary="Why is this address blocked (now, or at a past moment)?",
    response_model=ExplainBody,
    responses={
        **_INVALID,
        410: {"model": ErrorBody, "description": "`at` is before the history horizon (purged)."},
        503: {"model": ErrorBody, "description": "No version is loaded yet."},
    },
)
async def explain(
    ip: IpParam,
    request: Request,
    holder: HolderDep,
    source: SourceDep,
    at: Annotated[
        str | None,
        Query(
            description="RFC 3339 (`Z` or an offset) or a date (00:00 UTC).",
            examples=["2020-06-01", "2020-06-01T12:00:00Z"],
            json_schema_extra={
                "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]
            },
        ),
    ] = None,
) -> Any:
    """Every feed entry containing the address, with label, score and since when it is listed.

    Without ``at``: the answer ``/check_ip`` gives now (same ``blocked``).
    With ``at``: the answer the service gave then, from history.
    """
    try:
        family, value = parse_address(ip)
    except InvalidAddress as exc:
        return _error(422, "invalid_address", exc.reason)
    moment = None
    if at is not None:
        try:
            moment = parse_moment(at)
        except ValueError as exc:
            return _error(422, "invalid_at", str(exc))
    text = format_address(family, value)
    lookups = await source.lookup(address_keys(family, value))
    if moment is None:
        body = await _explain_now(text, (family, value), lookups, holder, source)
        if isinstance(body, ExplainBody):
            await _add_control(body, (family, value), request.app.state.control)
        return body
    catalog = await source.catalog()
    horizon = horizon_of(request.app.state.settings, catalog, time.time())
    if horizon is not None and moment < horizon:
        return _error(
            410, "purged", f"history before {iso_moment(horizon)} is purged", horizon=iso_moment(horizon)
        )
    record = catalog.in_force(moment)
    matches = matches_at(lookups, moment) if record is not None else []
    return ExplainBody(
        ip=text,
        blocked=bool(matches),
        at=iso_moment(moment),
        version=record.number if record else None,
        built_at=iso_moment(record.at) if record else None,
        matches=[_match_body(m) for m in matches],
        decided_by="feeds" if matches else None,
    )


async def _add_control(body: ExplainBody, address: tuple[int, int], control: ControlService) -> None:
    """Overrides, reputation and the deciding source, by the same precedence as ``/check_ip``."""
    family, value = address
    now = control.now()
    body.overrides = [override_body(o) for o in control.view.applying(family, value, now)]
    keyed = control.keyed(body.ip)
    now_ms = int(now * 1000)
    try:
        state = await control.store.reputation(keyed.key)
    except (RedisError, sqlite3.Error, OSError):
        # The answer itself comes from this process's view; only the details are missing.
        detail = "the reputation store is unavailable; the answer comes from this process's view"
        body.reputation = {"key": keyed.key, "error": "backend_unavailable", "detail": detail}
    else:
        body.reputation = control.reputation_body(keyed.key, state, now_ms) if state is not None else None
    verdict = control.view.verdict(family, value, now) if control.view.active else None
    if verdict is not None:
        body.decided_by = verdict
        body.blocked = verdict != "allow"
    else:
        body.decided_by = "feeds" if body.matches else None


async def _explain_now(
    text: str, address: tuple[int, int], lookups: Lookups, holder: VersionHolder, source: HistorySource
) -> Any:
    family, value = address
    version = holder.version
    matches = matches_at(lookups, None)
    if version is None:
        # Live lookups hold no version: history's latest is the answer.
        catalog = await source.catalog()
        if not catalog.versions:
            return _error(503, "no_data", "no blocklist version is available yet")
        latest = catalog.versions[-1]
        number, built_at = latest.number, latest.at
    else:
        hit = version.index.lookup(family, value)
        feeds = set(hit.feeds) if hit else set()
        matches = [m for m in matches if m.feed in feeds]
        if hit is not None:
            # A feed the served index names but history lacks (not recorded
            # yet): its merged range, so the answer never contradicts itself.
            for feed in sorted(feeds - {m.feed for m in matches}):
                bits = 32 if family == V4 else 128
                start, prefix = next(
                    (s, p)
                    for s, p in cidr_pieces(hit.first, hit.last, bits)
                    if s <= value < s + (1 << (bits - p))
                )
                network = f"{format_address(family, start)}/{prefix}"
                matches.append(Match(feed, network, "", hit.score, None))
        number, built_at = version.number, version.built_at
    return ExplainBody(
        ip=text,
        blocked=bool(matches),
        version=number,
        built_at=iso_moment(built_at),
        matches=[_match_body(m) for m in matches],
    )


@router.get(
    "/ip/{ip}/history",
    summary="Every interval during which a feed listed this address.",
    response_model=HistoryBody,
    responses=_INVALID,
)
async def ip_history(
    ip: IpParam,
    source: SourceDep,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
) -> Any:
    """Newest first; ``to`` is null while the feed still lists it (Whip's ``datetime=all``)."""
    try:
        family, value = parse_address(ip)
    except InvalidAddress as exc:
        return _error(422, "invalid_address", exc.reason)
    items = listings(await source.lookup(address_keys(family, value)))
    page = items[offset : offset + limit]
    return {
        "ip": format_address(family, value),
        "total": len(items),
        "offset": offset,
        "next_offset": _page(len(items), offset, limit),
        "intervals": [
            {
                "feed": i.feed,
                "network": i.network,
                "label": i.label,
                "from": iso_moment(i.start),
                "to": iso_moment(i.end),
            }
            for i in page
        ],
    }


def _version_body(record: VersionRecord, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "number": record.number,
        "kind": record.kind,
        "at": iso_moment(record.at),
        "recorded_at": iso_moment(record.recorded_at),
        "feeds": counts,
        "imported": {name: row.source for name, row in record.feeds.items()}
        if record.kind == "import"
        else {},
    }


@router.get(
    "/versions",
    summary="Every version history holds, newest first.",
    response_model=VersionsBody,
    responses=_INVALID,
)
async def versions(
    request: Request, source: SourceDep, limit: LimitParam = 100, offset: OffsetParam = 0
) -> Any:
    """Number, when it came into force, and each feed's networks then; paginated."""
    catalog = await source.catalog()
    horizon = horizon_of(request.app.state.settings, catalog, time.time())
    counts = catalog.counts()
    newest = catalog.versions[::-1]
    return {
        "total": len(newest),
        "offset": offset,
        "next_offset": _page(len(newest), offset, limit),
        "horizon": iso_moment(horizon),
        "versions": [_version_body(v, counts[v.number]) for v in newest[offset : offset + limit]],
    }


_UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown or purged version."},
    **_INVALID,
}


@router.get("/versions/{number}", summary="One version.", response_model=VersionBody, responses=_UNKNOWN)
async def version(number: int, source: SourceDep) -> Any:
    """When it came into force and each feed's networks then."""
    catalog = await source.catalog()
    record = catalog.get(number)
    if record is None:
        return _error(404, "unknown_version", f"version {number} is unknown or purged")
    return _version_body(record, catalog.counts()[number])


@router.get(
    "/versions/{first}/diff/{second}",
    summary="Networks added and removed between two versions, per feed.",
    response_model=DiffBody,
    responses=_UNKNOWN,
)
async def diff(
    first: int, second: int, source: SourceDep, limit: LimitParam = 1000, offset: OffsetParam = 0
) -> Any:
    """``added``: listed in force at ``second`` and not at ``first``; ``removed``: the reverse."""
    catalog = await source.catalog()
    a, b = catalog.get(first), catalog.get(second)
    missing = next((n for n, r in ((first, a), (second, b)) if r is None), None)
    if a is None or b is None:
        return _error(404, "unknown_version", f"version {missing} is unknown or purged")
    changes: list[dict[str, str]] = []
    summary: dict[str, dict[str, int]] = {}
    for feed in catalog.feeds():
        added, removed = await source.diff(feed, a.at, b.at)
        if added or removed:
            summary[feed] = {"added": len(added), "removed": len(removed)}
        changes += [{"feed": feed, "network": key_network(k), "change": "added"} for k in added]
        changes += [{"feed": feed, "network": key_network(k), "change": "removed"} for k in removed]
    return {
        "from": first,
        "to": second,
        "summary": summary,
        "total": len(changes),
        "offset": offset,
        "next_offset": _page(len(changes), offset, limit),
        "changes": changes[offset : offset + limit],
    }
