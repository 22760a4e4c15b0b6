"""FastAPI routes: the documented ``/check_ip/{ip}``, probes, status, metrics.

In a running service ``GET /check_ip/...`` is answered by the fast path in
:mod:`ipchecking.fastpath` before it reaches FastAPI; the route here gives
the same answer (same function) and documents it in the OpenAPI schema.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from blocklist import __version__
from ipchecking.answers import check_ip as answer_check_ip
from ipchecking.answers import check_ip_live
from ipchecking.holder import VersionHolder
from ipchecking.statusviews import version_summary

router = APIRouter()


class CheckResult(BaseModel):
    """Whether the address is on the blocklist."""

    blocked: bool


class ErrorBody(BaseModel):
    """Why a request could not be answered."""

    error: str
    detail: str


class Runtime(Protocol):
    """What the routes need of the mode-specific runtime."""

    mode: str
    started_at: float

    def ready_version(self) -> int | None:
        """Number of the version answers come from, or None while none can be given."""
        ...

    def status(self) -> dict[str, Any]:
        """Mode-specific status fields."""
        ...


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, a thread hop per request (about 100 us here) for a field read.
async def get_holder(request: Request) -> VersionHolder:
    """The process's served-version holder."""
    holder: VersionHolder = request.app.state.holder
    return holder


async def get_runtime(request: Request) -> Runtime:
    """The mode runtime started in the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


HolderDep = Annotated[VersionHolder, Depends(get_holder)]
# Documented as what is accepted (one IPv4 or IPv6 address); the check itself
# is the fast path's parser, so anything else still gets its 422 with a reason.
IpParam = Annotated[
    str,
    Path(
        description="One IPv4 or IPv6 address; `::ffff:a.b.c.d` is looked up as IPv4.",
        examples=["1.2.3.4", "2001:db8::1"],
        json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    ),
]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get(
    "/check_ip/{ip:path}",
    summary="Is this address on the blocklist?",
    response_model=CheckResult,
    responses={
        422: {"model": ErrorBody, "description": "Not a single valid IPv4 or IPv6 address."},
        503: {
            "model": ErrorBody,
            "description": "No blocklist version is loaded yet, or (live lookups) Redis did not answer.",
        },
    },
    tags=["lookup"],
)
async def check_ip(ip: IpParam, request: Request, holder: HolderDep) -> Response:
    """Answer ``{"blocked": true}`` or ``{"blocked": false}``.

    The served version's number is in the ``X-Blocklist-Version`` header.
    IPv4-mapped IPv6 addresses are looked up as IPv4.
    """
    live = request.app.state.live
    if live is None:
        status, headers, body, _ = answer_check_ip(holder, ip)
    else:
        status, headers, body, _ = await check_ip_live(live, ip, holder.control)
    return Response(body, status, {k.decode(): v.decode() for k, v in headers})


@router.get("/healthz", tags=["probes"], summary="Liveness: the process answers.")
async def healthz() -> dict[str, str]:
    """Always 200 while the process runs its event loop."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["probes"],
    summary="Readiness: lookups can be answered.",
    responses={503: {"model": ErrorBody, "description": "No version yet; live lookups: Redis unreachable."}},
)
async def readyz(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """200 with the version answers come from, 503 while no answer can be given.

    Local lookups: ready once a version is held, and still ready when Redis
    goes away (answers stay correct). Live lookups: ready while Redis answers
    and holds a version.
    """
    number = runtime.ready_version()
    if number is None:
        response.status_code = 503
        return {"error": "not_ready", "detail": "no blocklist version is available yet"}
    return {"status": "ready", "version": number}


@router.get("/status", tags=["status"], summary="Mode, served version and per-feed state.")
async def status(request: Request, holder: HolderDep, runtime: RuntimeDep) -> dict[str, Any]:
    """What is served, where it came from, and how each feed's syncs went."""
    version = holder.version
    now = time.time()
    body: dict[str, Any] = {
        "service_version": __version__,
        "mode": runtime.mode,
        "ready": runtime.ready_version() is not None,
        "uptime_s": round(now - runtime.started_at, 3),
        "version": None,
    }
    if version is not None:
        index = version.index
        body["version"] = version_summary(
            version.number,
            version.built_at,
            checksum=version.checksum,
            ranges=(len(index.v4), len(index.v6)),
            bootstrap=version.bootstrap,
        )
    body.update(runtime.status())
    body["control"] = request.app.state.control.sync.status()
    body["stale"] = body["version"] is None or any(f["stale"] for f in body.get("feeds", {}).values())
    return body


@router.get("/metrics", tags=["status"], summary="Prometheus metrics.", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Request, lookup, version and sync metrics in Prometheus text format."""
    registries: tuple[CollectorRegistry, ...] = request.app.state.registries
    return Response(b"".join(map(generate_latest, registries)), media_type=CONTENT_TYPE_LATEST)
