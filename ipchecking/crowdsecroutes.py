"""CrowdSec's Local API for bouncers, under ``/crowdsec/``: this service as a decision source.

A bouncer configured with ``api_url: http://HOST:8000/crowdsec/`` and a key
of scope ``bouncer`` (or above) in ``X-Api-Key`` pulls
``/v1/decisions/stream``: at ``startup=true`` every current decision in
``new``; later what was added (``new``) and removed (``deleted``) since that
key's previous pull, as CrowdSec does. ``HEAD`` answers the same headers
and never moves the pull point. Bouncers in live mode ask
``/v1/decisions?ip=`` (or ``range=``) per request. The decisions are those
of :mod:`blocklist.crowdsec` (what ``/v1/export`` serves, as objects), read
from history and the overrides, so every mode and lookup kind serves them;
a set is computed once per (version, override state) and shared by every key.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from blocklist.addresses import parse_address, parse_network
from blocklist.changes import FeedChange
from blocklist.control import Scope
from blocklist.crowdsec import Decision, DecisionIndex, Filters, OverrideState, decision_set, diff
from blocklist.decision import ControlView
from blocklist.errors import InvalidAddress
from blocklist.history import Catalog, VersionRecord
from blocklist.settings import Settings
from ipchecking.auth import ApiKeys, Principal, grants
from ipchecking.crowdsecpulls import PullPoint, PullStore
from ipchecking.exportroutes import seconds_to_refresh
from ipchecking.historysource import HistorySource
from ipchecking.routes import ErrorBody

router = APIRouter(prefix="/crowdsec/v1", tags=["crowdsec"])
NEEDED: Scope = "bouncer"
#: Decision sets kept, per (version, override digest).
MEMO_SIZE = 8


class DecisionSets:
    """Decision sets by pull point, computed from history once each (least recently used evicted)."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        self._held: OrderedDict[tuple[int, str], tuple[dict[str, Decision], DecisionIndex]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(
        self, source: HistorySource, catalog: Catalog, point: PullPoint
    ) -> tuple[dict[str, Decision], DecisionIndex] | None:
        """The set at ``point`` and its index; None if history no longer holds its version."""
        key = (point.version, point.overrides.digest)
        async with self._lock:  # concurrent pulls of one point wait for the first
            found = self._held.get(key)
            if found is not None:
                self._held.move_to_end(key)
                return found
            record = catalog.get(point.version)
            if record is None:
                return None
            feeds = await _feeds_at(source, catalog, record)
            decisions = await asyncio.to_thread(decision_set, feeds, point.overrides)
            found = self._held[key] = (decisions, DecisionIndex(decisions))
            while len(self._held) > self._size:
                self._held.popitem(last=False)
            return found


async def _feeds_at(source: HistorySource, catalog: Catalog, record: VersionRecord) -> dict[str, list[bytes]]:
    """Every feed's network keys at ``record`` (latest: as held; older: rebuilt from the diff)."""
    latest = catalog.versions[-1]
    out: dict[str, list[bytes]] = {}
    for feed in catalog.feeds():
        now = await source.opens(feed)
        if record.number == latest.number:
            out[feed] = now
        else:
            added, removed = await source.diff(feed, record.at, latest.at)
            out[feed] = sorted(FeedChange(now, added, removed).then())
    return out


def _refusal(status: int, error: str, detail: str) -> JSONResponse:
    # ``message`` is what CrowdSec's own API answers and bouncers log.
    return JSONResponse(
        {"error": error, "detail": detail, "message": detail}, status, {"cache-control": "no-store"}
    )


def _principal(request: Request) -> Principal | None:
    keys: ApiKeys = request.app.state.keys
    principal = keys.identify(request.scope["headers"])
    return principal if principal is not None and grants(principal.scope, NEEDED) else None


_FORBIDDEN = (403, "forbidden", "a key of scope bouncer (or above) is required in X-Api-Key")
_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "No key of scope bouncer or above."},
    422: {"model": ErrorBody, "description": "An address or range that is not one."},
    503: {"model": ErrorBody, "description": "History holds no version yet, or Redis did not answer."},
}


async def _current(request: Request) -> tuple[Catalog, PullPoint, float] | JSONResponse:
    """History's catalog, the current pull point and the seconds to the next refresh."""
    source: HistorySource = request.app.state.history
    settings: Settings = request.app.state.settings
    control: ControlView = request.app.state.holder.control
    catalog = await source.catalog()
    if not catalog.versions:
        return _refusal(503, "no_data", "no blocklist version is recorded yet; retry shortly")
    now = control.clock()
    latest = catalog.versions[-1]
    point = PullPoint(latest.number, OverrideState.of(control.overrides.values(), now))
    return catalog, point, seconds_to_refresh(settings, latest.at, now)


def _documents(decisions: list[Decision], now: float, refresh: float) -> list[dict[str, Any]] | None:
    return [d.document(now, refresh) for d in decisions] or None


@router.head("/decisions/stream", include_in_schema=False)
@router.get(
    "/decisions/stream",
    summary="Decisions for a bouncer: all at startup, then changes.",
    responses=_RESPONSES,
)
async def stream(
    request: Request,
    *,
    startup: bool = False,
    scopes: Annotated[str | None, Query(description="Comma-separated: ip, range (default ip).")] = None,
    origins: Annotated[str | None, Query(description="Comma-separated: lists, cscli.")] = None,
    scenarios_containing: str | None = None,
    scenarios_not_containing: str | None = None,
) -> Response:
    """``{"new": [...] | null, "deleted": [...] | null}``; see the module docstring."""
    principal = _principal(request)
    if principal is None:
        return _refusal(*_FORBIDDEN)
    try:
        current = await _current(request)
        if isinstance(current, JSONResponse):
            return current
        catalog, point, refresh = current
        source: HistorySource = request.app.state.history
        sets: DecisionSets = request.app.state.decision_sets
        pulls: PullStore = request.app.state.crowdsec_pulls
        now_set = await sets.get(source, catalog, point)
        assert now_set is not None  # the latest version is in the catalog
        wanted = Filters.parse(scopes, origins, scenarios_containing, scenarios_not_containing)
        now_decisions = {v: d for v, d in now_set[0].items() if wanted.admits(d)}
        previous = None if startup else await pulls.get(principal.name)
        older = None if previous is None else await sets.get(source, catalog, previous)
        new: list[Decision]
        deleted: list[Decision]
        if older is None:  # startup, first pull, or a pull point history no longer holds
            new, deleted = list(now_decisions.values()), []
        elif previous == point:
            new, deleted = [], []
        else:
            new, deleted = diff({v: d for v, d in older[0].items() if wanted.admits(d)}, now_decisions)
        if request.method == "GET" and previous != point:
            await pulls.put(principal.name, point, request.app.state.holder.control.clock())
    except (RedisError, OSError) as exc:
        return _refusal(
            503, "backend_unavailable", f"the decision store did not answer: {type(exc).__name__}"
        )
    moment = request.app.state.holder.control.clock()
    body = {"new": _documents(new, moment, refresh), "deleted": _documents(deleted, moment, refresh)}
    headers = {"cache-control": "no-store", "x-blocklist-version": str(point.version)}
    if request.method == "HEAD":
        return Response(headers=headers, media_type="application/json")
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json", headers=headers)


@router.get(
    "/decisions", summary="Decisions covering an address or a range (live bouncers).", responses=_RESPONSES
)
async def decisions(
    request: Request,
    *,
    ip: str | None = None,
    range: Annotated[str | None, Query(description="A CIDR.")] = None,
    scope: str | None = None,
    value: str | None = None,
    contains: bool = True,
) -> Response:
    """The decisions covering ``ip`` (or overlapping ``range``: with ``contains`` those holding
    it whole, without those inside it), as a list, or ``null``."""
    if _principal(request) is None:
        return _refusal(*_FORBIDDEN)
    if ip is None and range is None and value is not None:
        ip, range = (value, None) if (scope or "ip").lower() == "ip" else (None, value)
    try:
        if ip is not None:
            family, address = parse_address(ip)
            first = last = address
        elif range is not None:
            family, first, last = parse_network(range)
        else:
            return _refusal(422, "invalid_request", "give ip or range (or scope and value)")
    except InvalidAddress as exc:
        return _refusal(422, "invalid_address", exc.reason)
    try:
        current = await _current(request)
        if isinstance(current, JSONResponse):
            return current
        catalog, point, refresh = current
        found = await request.app.state.decision_sets.get(request.app.state.history, catalog, point)
    except (RedisError, OSError) as exc:
        return _refusal(503, "backend_unavailable", f"history did not answer: {type(exc).__name__}")
    assert found is not None
    hits = found[1].overlapping(family, first, last)
    if range is not None and contains:
        hits = [d for d in hits if d.first <= first and last <= d.last]
    elif range is not None:
        hits = [d for d in hits if first <= d.first and d.last <= last]
    body = _documents(hits, request.app.state.holder.control.clock(), refresh)
    return Response(json.dumps(body), media_type="application/json", headers={"cache-control": "no-store"})
