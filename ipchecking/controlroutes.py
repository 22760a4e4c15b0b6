"""The ``/v1`` operator API: overrides, reports, violations and the audit log.

Overrides and the audit log need an ``admin`` key, reports a ``report``
key (see :mod:`ipchecking.auth`); no key or an unknown one answers 401, a
key without the scope 403, a bad body 422, each with a JSON reason.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blocklist.control import Scope
from blocklist.errors import InvalidAddress
from blocklist.history import iso_moment, parse_moment
from blocklist.overrides import REASON_WIDTH, Action
from blocklist.reputation import COMMENT_WIDTH, MAX_SUPPRESS_SECONDS
from ipchecking.auth import ApiKeys, Principal, grants
from ipchecking.controlservice import ControlService, Refused, override_body
from ipchecking.routes import ErrorBody

router = APIRouter(prefix="/v1", tags=["operator control"])
#: Reports accepted in one request.
MAX_REPORTS = 1000


class AccessDenied(Exception):
    """No valid key (401) or a key without the scope (403)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency: the request's principal, which must hold ``scope``."""

    async def principal(request: Request) -> Principal:
        keys: ApiKeys = request.app.state.keys
        found = keys.identify(request.scope["headers"])
        if found is None:
            raise AccessDenied(401, "unauthorized", "a valid API key is required")
        if not grants(found.scope, scope):
            raise AccessDenied(403, "forbidden", f"this needs a key with the {scope} scope")
        return found

    return principal


async def access_denied(request: Request, exc: Exception) -> JSONResponse:
    """The JSON answer of :class:`AccessDenied`."""
    assert isinstance(exc, AccessDenied)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else {}
    return JSONResponse({"error": exc.error, "detail": exc.detail}, exc.status, headers)


async def get_control(request: Request) -> ControlService:
    """The process's control service."""
    control: ControlService = request.app.state.control
    return control


ControlDep = Annotated[ControlService, Depends(get_control)]
AdminDep = Annotated[Principal, Depends(require("admin"))]
ReporterDep = Annotated[Principal, Depends(require("report"))]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid API key."},
    403: {"model": ErrorBody, "description": "The key lacks the scope."},
    422: {"model": ErrorBody, "description": "A bad body or parameter."},
    503: {"model": ErrorBody, "description": "The store is unavailable."},
}


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class OverrideIn(BaseModel):
    """A manual block or allow."""

    model_config = ConfigDict(extra="forbid")

    network: str = Field(max_length=100, description="An address, a CIDR or first-last.")
    action: Action
    reason: str = Field(default="", max_length=REASON_WIDTH)
    expires_in: float | None = Field(default=None, gt=0, le=100 * 365 * 86400, description="Seconds.")
    expires_at: str | None = Field(default=None, description="RFC 3339; neither: permanent.")


class OverrideOut(BaseModel):
    """A stored override."""

    id: int
    network: str
    action: Action
    reason: str
    created_at: str
    expires_at: str | None
    created_by: str


class OverridesOut(BaseModel):
    """One page of overrides, by id."""

    total: int
    offset: int
    next_offset: int | None
    overrides: list[OverrideOut]


@router.post(
    "/overrides",
    status_code=201,
    response_model=OverrideOut,
    summary="Block or allow a network.",
    responses=AUTH_RESPONSES,
)
async def create_override(body: OverrideIn, control: ControlDep, principal: AdminDep) -> Any:
    """Takes effect on every API process within a second; survives restarts."""
    try:
        expires_at = parse_moment(body.expires_at) if body.expires_at is not None else None
        draft = control.draft(body.network, body.action, body.reason, body.expires_in, expires_at)
    except InvalidAddress as exc:
        return _error(422, "invalid_network", exc.reason)
    except Refused as exc:
        return _error(422, exc.error, exc.reason)
    except ValueError as exc:
        return _error(422, "invalid_expiry", str(exc))
    item = await control.add_override(draft, principal.name)
    return JSONResponse(override_body(item), status_code=201)


@router.get("/overrides", response_model=OverridesOut, summary="Overrides, by id.", responses=AUTH_RESPONSES)
async def list_overrides(
    control: ControlDep,
    _: AdminDep,
    action: Action | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Any:
    """Expired overrides are listed until they are cleaned up (within the purge interval)."""
    page = await control.store.list_overrides(action, offset, limit)
    return {
        "total": page.total,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < page.total else None,
        "overrides": [override_body(o) for o in page.items],
    }


OverrideId = Annotated[int, Path(ge=1, le=2**62, description="The override's id.")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such override."}}


@router.get(
    "/overrides/{override_id}",
    response_model=OverrideOut,
    summary="One override.",
    responses=AUTH_RESPONSES | _NOT_FOUND,
)
async def get_override(override_id: OverrideId, control: ControlDep, _: AdminDep) -> Any:
    """The stored entry."""
    item = await control.store.get_override(override_id)
    if item is None:
        return _error(404, "unknown_override", f"no override {override_id}")
    return override_body(item)


@router.delete(
    "/overrides/{override_id}",
    status_code=204,
    summary="Remove an override.",
    responses=AUTH_RESPONSES | _NOT_FOUND,
)
async def delete_override(override_id: OverrideId, control: ControlDep, principal: AdminDep) -> Response:
    """Stops applying on every API process within a second."""
    if await control.delete_override(override_id, principal.name) is None:
        return _error(404, "unknown_override", f"no override {override_id}")
    return Response(status_code=204)


class ReportIn(BaseModel):
    """One report of abuse by an address."""

    model_config = ConfigDict(extra="forbid")

    ip: str = Field(max_length=100)
    violation: str = Field(max_length=100)
    comment: str = Field(default="", max_length=COMMENT_WIDTH)
    suppress_recovery: int = Field(default=0, ge=0, le=MAX_SUPPRESS_SECONDS, description="Seconds.")


_REPORT_BODY = Body(
    description=f"One report, or a list of up to {MAX_REPORTS}.",
    examples=[{"ip": "198.51.100.7", "violation": "failed_login", "comment": "10 failures in 1 min"}],
)


@router.post("/reports", summary="Report abuse: lowers the addresses' reputation.", responses=AUTH_RESPONSES)
async def report(
    control: ControlDep,
    principal: ReporterDep,
    body: Annotated[ReportIn | list[dict[str, Any]], _REPORT_BODY],
) -> Any:
    """Each address's reputation afterwards.

    A list answers ``{"results": [...]}`` in order; an item that is not a
    valid report (unknown violation, bad address) gets its own ``error``
    and the others are applied.
    """
    single = isinstance(body, ReportIn)
    raws: list[ReportIn | dict[str, Any]] = [body] if isinstance(body, ReportIn) else list(body)
    if len(raws) > MAX_REPORTS:
        return _error(422, "too_many_reports", f"at most {MAX_REPORTS} reports per request")
    now_ms = int(control.now() * 1000)
    results: list[dict[str, Any]] = []
    items = []
    for raw in raws:
        try:
            one = raw if isinstance(raw, ReportIn) else ReportIn.model_validate(raw)
            items.append(
                control.report_item(
                    one.ip,
                    one.violation,
                    comment=one.comment,
                    suppress=one.suppress_recovery,
                    reporter=principal.name,
                    now_ms=now_ms,
                )
            )
            results.append({"ip": one.ip})
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            results.append({"error": "invalid_report", "detail": detail})
        except InvalidAddress as exc:
            results.append({"ip": one.ip, "error": "invalid_address", "detail": exc.reason})
        except Refused as exc:
            results.append({"ip": one.ip, "error": exc.error, "detail": exc.reason})
    states = iter(await control.report(items, now_ms))
    keys = iter(items)
    for result in results:
        if "error" not in result:
            result.update(control.reputation_body(next(keys).key, next(states), now_ms))
    if not single:
        return {"results": results}
    if "error" in results[0]:
        return JSONResponse({k: v for k, v in results[0].items() if k != "ip"}, status_code=422)
    return results[0]


@router.get("/violations", summary="The configured violations.")
async def violations(control: ControlDep) -> list[dict[str, Any]]:
    """Name, penalty and decrease limit of each, as in iprepd."""
    return [
        {"name": v.name, "penalty": v.penalty, "decrease_limit": v.decrease_limit}
        for v in control.settings.violations
    ]


@router.get("/audit", summary="Every change, newest first.", responses=AUTH_RESPONSES)
async def audit(
    control: ControlDep,
    _: AdminDep,
    before: Annotated[str | None, Query(max_length=40, description="An entry id: older ones.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Who (the key's name), when, what; ``next`` pages further back."""
    try:
        entries = await control.store.audit(before, limit)
    except ValueError as exc:
        return _error(422, "invalid_before", str(exc))
    return {
        "entries": [
            {
                "id": e.id,
                "at": iso_moment(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in entries
        ],
        "next": entries[-1].id if len(entries) == limit else None,
    }
