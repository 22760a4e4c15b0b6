"""``GET /v1/changes?since=N``: what the feeds' networks gained and lost since version N.

A consumer that keeps its own copy (a firewall set, a local file) applies
``added`` and ``removed`` instead of downloading everything again, then
asks again with ``since`` set to the answer's ``to``. The networks are the
union of every feed, aggregated as exports are (merged, fewest CIDRs), per
family. Overrides carry no version number, so the answer lists the active
ones as they are now: a copy of feeds, plus ``overrides.block``, minus
``overrides.allow`` is what ``/v1/export`` serves (reputation aside).

Everything comes from history (both modes, any lookup kind). Answers are
memoised per (``since``, latest version) for the feed part, so a fleet
asking with the same ``since`` costs one computation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from blocklist.addresses import MAX_BITS, V4, V6
from blocklist.aggregate import cidrs
from blocklist.changes import FeedChange, changes
from blocklist.decision import ControlView
from blocklist.exportformats import cidr_texts
from blocklist.history import Catalog
from blocklist.overrides import Action
from blocklist.settings import Settings
from ipchecking.historyroutes import horizon_of
from ipchecking.historysource import HistorySource
from ipchecking.routes import ErrorBody

router = APIRouter(prefix="/v1", tags=["consumers"])

#: Feed parts kept, per (since, latest version).
MEMO_SIZE = 32
_FAMILY_NAMES = {V4: "ipv4", V6: "ipv6"}
_EMPTY = '{"ipv4":[],"ipv6":[]}'


class Networks(BaseModel):
    """CIDRs per family."""

    ipv4: list[str]
    ipv6: list[str]


class ActiveOverrides(BaseModel):
    """The networks active overrides cover now, aggregated."""

    block: Networks
    allow: Networks


class ChangesBody(BaseModel):
    """What the union of every feed gained and lost from version ``from`` to ``to``."""

    from_: int = Field(alias="from")
    to: int
    added: Networks
    removed: Networks
    overrides: ActiveOverrides


class ChangeMemo:
    """The feed part of recent answers (JSON text), least recently used evicted."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        self._held: OrderedDict[tuple[int, int, float], str] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, key: tuple[int, int, float], source: HistorySource, since_at: float) -> str:
        """The feed part for ``key`` (since, latest number, latest moment), computed once."""
        async with self._lock:  # concurrent askers of one key wait for the first
            found = self._held.get(key)
            if found is not None:
                self._held.move_to_end(key)
                return found
            text = await _feed_part(source, since_at, key[2])
            self._held[key] = text
            while len(self._held) > self._size:
                self._held.popitem(last=False)
            return text


def _networks_json(per_family: dict[int, list[tuple[int, int]]]) -> str:
    return json.dumps({_FAMILY_NAMES[f]: list(cidr_texts(f, c)) for f, c in per_family.items()})


async def _feed_part(source: HistorySource, since_at: float, latest_at: float) -> str:
    catalog = await source.catalog()
    feeds: dict[str, FeedChange] = {}
    for feed in catalog.feeds():
        added, removed = await source.diff(feed, since_at, latest_at)
        feeds[feed] = FeedChange(await source.opens(feed), added, removed)
    result = await asyncio.to_thread(changes, feeds)
    return f'"added":{_networks_json(result["added"])},"removed":{_networks_json(result["removed"])}'


def _overrides_json(view: ControlView, now: float) -> str:
    actions: tuple[Action, ...] = ("block", "allow")
    parts = (
        f'"{action}":'
        + _networks_json(
            {f: list(cidrs(view.override_ranges(f, action, now), MAX_BITS[f])) for f in (V4, V6)}
        )
        for action in actions
    )
    return "{" + ",".join(parts) + "}"


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status, {"cache-control": "no-store"})


def _oldest_usable(settings: Settings, catalog: Catalog) -> int | None:
    """The oldest version whose networks history still holds whole: the one in force at the
    horizon (what ended before it is purged), or the first."""
    horizon = horizon_of(settings, catalog, time.time())
    if horizon is not None:
        record = catalog.in_force(horizon)
        if record is not None:
            return record.number
    return min((v.number for v in catalog.versions), default=None)


@router.get(
    "/changes",
    summary="Networks added and removed since a version, for consumers that keep a copy.",
    response_model=ChangesBody,
    responses={
        404: {"model": ErrorBody, "description": "`since` names no version history holds (or none yet)."},
        409: {"model": ErrorBody, "description": "`since` is newer than the latest version here."},
        410: {"model": ErrorBody, "description": "`since` is purged; `oldest` is the oldest usable."},
        422: {"model": ErrorBody, "description": "`since` is missing or not a version number."},
    },
)
async def feed_changes(
    request: Request,
    since: Annotated[int, Query(ge=0, description="The version the consumer's copy is of.")],
) -> Response:
    """``added`` and ``removed`` networks of the union of every feed, from ``since`` to the
    latest version (``to``; ask again with ``since=to``), and the active overrides now."""
    source: HistorySource = request.app.state.history
    settings: Settings = request.app.state.settings
    catalog = await source.catalog()
    if not catalog.versions:
        return _error(404, "unknown_version", "history holds no version yet; retry shortly")
    latest = catalog.versions[-1]
    oldest = _oldest_usable(settings, catalog)
    if since > latest.number:
        return _error(409, "ahead", f"the latest version here is {latest.number}", latest=latest.number)
    record = catalog.get(since)
    if record is None or (oldest is not None and since < oldest):
        if oldest is not None and since < oldest:
            return _error(
                410, "purged", f"version {since} is purged; the oldest usable is {oldest}", oldest=oldest
            )
        return _error(404, "unknown_version", f"version {since} is unknown")
    if since == latest.number:
        feed_part = f'"added":{_EMPTY},"removed":{_EMPTY}'
    else:
        memo: ChangeMemo = request.app.state.change_memo
        feed_part = await memo.get((since, latest.number, latest.at), source, record.at)
    control: ControlView = request.app.state.holder.control
    text = (
        f'{{"from":{since},"to":{latest.number},{feed_part},'
        f'"overrides":{_overrides_json(control, control.clock())}}}'
    )
    return Response(
        text.encode(),
        media_type="application/json",
        headers={"cache-control": "no-cache", "x-blocklist-version": str(latest.number)},
    )
