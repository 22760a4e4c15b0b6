"""iprepd's documented API under ``/iprepd/``, over the same reputation and overrides.

Existing iprepd clients (iprepd-nginx, service integrations) point their
base URL at ``http://HOST:8000/iprepd`` and keep working: ``Authorization:
APIKey <key>`` with a ``read`` key for GETs and a ``report`` (or
``admin``) key for the rest. Answers follow iprepd: 404 for an address
with no reputation or one an allow override exempts (iprepd's exceptions),
200 with ``object``, ``type``, ``reputation``, ``reviewed``,
``lastupdated`` and, while recovery is suppressed, ``decayafter``; an
unknown violation is logged and answered 200. Hawk authentication is not
offered.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from blocklist import __version__
from blocklist.errors import InvalidAddress
from blocklist.history import iso_moment, parse_moment
from blocklist.reputation import FULL, MAX_SUPPRESS_SECONDS, score_at, set_score
from ipchecking.auth import Principal
from ipchecking.controlroutes import AUTH_RESPONSES, ControlDep, require
from ipchecking.controlservice import ControlService, Keyed, Refused
from ipchecking.routes import ErrorBody

log = logging.getLogger(__name__)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: {"model": ErrorBody, "description": "Not a valid address, type or decayafter."},
    404: {"model": ErrorBody, "description": "No reputation, or exempt (allow override)."},
}
router = APIRouter(prefix="/iprepd", tags=["iprepd compatibility"], responses=_RESPONSES)
ReaderDep = Annotated[Principal, Depends(require("read"))]
ReporterDep = Annotated[Principal, Depends(require("report"))]
#: iprepd's zero time, for an unset ``decayafter``.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _keyed(control: ControlService, ip: str) -> Keyed | JSONResponse:
    try:
        return control.keyed(ip)
    except InvalidAddress as exc:
        return _error(400, "invalid_address", exc.reason)


class ReputationIn(BaseModel):
    """iprepd's reputation document (``PUT /type/ip/{ip}``)."""

    model_config = ConfigDict(extra="ignore")

    object: str | None = None
    type: str | None = None
    reputation: int = Field(ge=0, le=FULL)
    reviewed: bool = False
    decayafter: str | None = None


class ViolationIn(BaseModel):
    """iprepd's violation document."""

    model_config = ConfigDict(extra="ignore")

    object: str = Field(max_length=100)
    type: str = "ip"
    violation: str = Field(max_length=100)
    suppress_recovery: int = Field(default=0, ge=0, le=MAX_SUPPRESS_SECONDS)


@router.get("/type/ip/{ip}", summary="An address's reputation (iprepd).")
async def get_reputation(ip: str, control: ControlDep, _: ReaderDep) -> Any:
    """200 with iprepd's document; 404 for no reputation or an allowed address."""
    keyed = _keyed(control, ip)
    if isinstance(keyed, JSONResponse):
        return keyed
    now = control.now()
    if control.view.verdict(keyed.family, keyed.value, now) == "allow":
        return _error(404, "exempt", "an allow override covers this address")
    state = await control.store.reputation(keyed.key)
    now_ms = int(now * 1000)
    if state is None or score_at(state, now_ms, control.policy) >= FULL:
        return _error(404, "unknown", "no reputation is recorded for this address")
    body: dict[str, Any] = {
        "object": ip,
        "type": "ip",
        "reputation": score_at(state, now_ms, control.policy),
        "reviewed": state.reviewed,
        "lastupdated": iso_moment(state.updated / 1000),
        "decayafter": iso_moment(state.decay_after / 1000) if state.decay_after > now_ms else _ZERO_TIME,
    }
    return body


@router.put("/type/ip/{ip}", summary="Set an address's reputation (iprepd).", response_class=Response)
async def put_reputation(
    ip: str, body: ReputationIn, control: ControlDep, principal: ReporterDep
) -> Response:
    """Sets the score (audited); recovery starts now, or at ``decayafter``."""
    keyed = _keyed(control, ip)
    if isinstance(keyed, JSONResponse):
        return keyed
    if body.type not in {None, "ip"}:
        return _error(400, "unsupported_type", "only the ip type is supported")
    now_ms = int(control.now() * 1000)
    try:
        decay_after = int(parse_moment(body.decayafter) * 1000) if body.decayafter else 0
    except ValueError as exc:
        return _error(400, "invalid_decayafter", str(exc))
    if decay_after > now_ms + MAX_SUPPRESS_SECONDS * 1000:
        return _error(400, "invalid_decayafter", "decayafter is at most 14 days away, as suppress_recovery")
    state = await control.store.reputation(keyed.key)
    new = set_score(state, body.reputation, now_ms, decay_after=decay_after, reviewed=body.reviewed)
    await control.set_reputation(keyed.key, new, principal.name)
    return Response(status_code=200)


@router.delete("/type/ip/{ip}", summary="Delete an address's reputation (iprepd).", response_class=Response)
async def delete_reputation(ip: str, control: ControlDep, principal: ReporterDep) -> Response:
    """Forgets the address's reputation (audited)."""
    keyed = _keyed(control, ip)
    if isinstance(keyed, JSONResponse):
        return keyed
    await control.set_reputation(keyed.key, None, principal.name)
    return Response(status_code=200)


async def _apply(control: ControlService, items: list[ViolationIn], reporter: str) -> None:
    now_ms = int(control.now() * 1000)
    checked = []
    for item in items:
        try:
            if item.type != "ip":
                raise Refused("unsupported_type", "only the ip type is supported")
            checked.append(
                control.report_item(
                    item.object,
                    item.violation,
                    comment="",
                    suppress=item.suppress_recovery,
                    reporter=reporter,
                    now_ms=now_ms,
                )
            )
        except (InvalidAddress, Refused) as exc:
            # iprepd answers 200 and logs what it could not apply.
            log.warning(
                "iprepd violation not applied", extra={"reason": str(exc), "violation": item.violation}
            )
    await control.report(checked, now_ms)


@router.put(
    "/violations/type/ip/{ip}", summary="Apply a violation to an address (iprepd).", response_class=Response
)
async def put_violation(ip: str, body: ViolationIn, control: ControlDep, principal: ReporterDep) -> Response:
    """Lowers the reputation by the violation's penalty; 200 even for an unknown violation."""
    keyed = _keyed(control, ip)
    if isinstance(keyed, JSONResponse):
        return keyed
    await _apply(control, [body.model_copy(update={"object": ip})], principal.name)
    return Response(status_code=200)


@router.put(
    "/violations/type/ip", summary="Apply violations to many addresses (iprepd).", response_class=Response
)
async def put_violations(
    body: Annotated[list[ViolationIn], Field(max_length=1000)], control: ControlDep, principal: ReporterDep
) -> Response:
    """Each item as in the single-address form."""
    await _apply(control, body, principal.name)
    return Response(status_code=200)


@router.get("/violations", summary="The configured violations (iprepd).")
async def get_violations(control: ControlDep, _: ReaderDep) -> list[dict[str, Any]]:
    """iprepd's shape: ``name``, ``penalty``, ``decreaselimit``."""
    return [
        {"name": v.name, "penalty": v.penalty, "decreaselimit": v.decrease_limit}
        for v in control.settings.violations
    ]


@router.get("/__heartbeat__", summary="iprepd heartbeat: the store answers.")
async def heartbeat(request: Request) -> Any:
    """200 while the control data is followed; 503 with the error otherwise."""
    control: ControlService = request.app.state.control
    status = control.sync.status()
    if status["last_error"] is not None or not status["loaded"]:
        return _error(503, "backend_unavailable", status["last_error"] or "control data not loaded yet")
    return {"status": "ok"}


@router.get("/__lbheartbeat__", summary="iprepd load-balancer heartbeat.")
async def lbheartbeat() -> dict[str, str]:
    """Always 200 while the process runs."""
    return {"status": "ok"}


@router.get("/__version__", summary="iprepd version document.")
async def version() -> dict[str, str]:
    """Dockerflow's version document."""
    return {"source": "blocklist-service", "version": __version__, "commit": "", "build": ""}
