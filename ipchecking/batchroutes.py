"""``POST /v1/check``: many lookups in one request, answered in order.

The answers are exactly those ``/check_ip`` would give (same decision:
allow, manual block, reputation, feeds), all from one version. The body is
read with a byte cap before anything is parsed, and the answer is written
as bytes without a per-item serializer: a batch of 10,000 addresses costs a
small fraction of 10,000 single requests (see ``bench/batch.py``).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from blocklist.addresses import parse_address
from blocklist.errors import BackendUnavailable, InvalidAddress
from ipchecking.answers import NO_DATA_REASON, blocked_many
from ipchecking.holder import VersionHolder
from ipchecking.live import LiveRuntime
from ipchecking.routes import ErrorBody

router = APIRouter(prefix="/v1", tags=["lookup"])

#: Addresses accepted in one batch.
MAX_BATCH = 10_000
#: Bytes accepted in one batch body (10,000 of the longest addresses, quoted, fit).
MAX_BATCH_BYTES = 1 << 20
_INVALID_ITEM = '{"ip":%s,"error":"invalid_address","detail":%s}'


class BatchRequest(BaseModel):
    """Addresses to look up."""

    ips: list[str] = Field(max_length=MAX_BATCH, examples=[["1.2.3.4", "2001:db8::1"]])


class BatchItem(BaseModel):
    """One address's answer: ``blocked``, or ``error`` and ``detail`` for an invalid entry."""

    ip: str
    blocked: bool | None = None
    error: str | None = None
    detail: str | None = None


class BatchResult(BaseModel):
    """Every answer, in the order of the request, from one version."""

    version: int
    results: list[BatchItem]


def _refusal(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status, {"cache-control": "no-store"})


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None once it passes :data:`MAX_BATCH_BYTES` (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BATCH_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _addresses(body: bytes) -> list[str] | str:
    """The ``ips`` list of a batch body, or why the body is not a batch.

    An entry that is not a string breaks the documented shape and fails the
    body; a string that is not an address is answered in place.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return "the body is not JSON"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("ips"), list):
        return 'the body must be an object with a list of addresses under "ips"'
    ips: list[str] = parsed["ips"]
    if len(ips) > MAX_BATCH:
        return f"at most {MAX_BATCH} addresses per batch (got {len(ips)})"
    for position, item in enumerate(ips):
        if not isinstance(item, str):
            return f'every entry of "ips" must be a string (entry {position} is not)'
    return ips


@router.post(
    "/check",
    summary="Look up many addresses at once.",
    response_model=BatchResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
        }
    },
    responses={
        413: {"model": ErrorBody, "description": f"The body is larger than {MAX_BATCH_BYTES} bytes."},
        422: {
            "model": ErrorBody,
            "description": f'Not an object with a list of at most {MAX_BATCH} entries under "ips".',
        },
        503: {
            "model": ErrorBody,
            "description": "No version is loaded yet, or (live lookups) Redis did not answer.",
        },
    },
)
async def check_many(request: Request) -> Response:
    """Answer each entry of ``ips`` as ``/check_ip`` would, in order, from one version.

    An entry that is not a valid address gets ``{"ip", "error":
    "invalid_address", "detail"}`` in its place and never fails the batch.
    The version answers came from is ``version`` (and ``X-Blocklist-Version``).
    """
    body = await _read_capped(request)
    if body is None:
        return _refusal(413, "too_large", f"the body is larger than {MAX_BATCH_BYTES} bytes")
    ips = _addresses(body)
    if isinstance(ips, str):
        return _refusal(422, "invalid_request", ips)
    parsed: list[tuple[int, int] | str] = []
    for item in ips:
        try:
            parsed.append(parse_address(item))
        except InvalidAddress as exc:
            parsed.append(exc.reason)
    live: LiveRuntime | None = request.app.state.live
    holder: VersionHolder = request.app.state.holder
    try:
        answered = _answer_local(holder, parsed) if live is None else await _answer_live(live, holder, parsed)
    except BackendUnavailable as exc:
        return _refusal(503, "backend_unavailable", str(exc))
    if answered is None:
        return _refusal(503, "no_data", NO_DATA_REASON)
    number, blocked = answered
    out = []
    for item, address, verdict in zip(ips, parsed, blocked, strict=True):
        if isinstance(address, str):
            out.append(_INVALID_ITEM % (json.dumps(item), json.dumps(address)))
        else:
            # A parsed address holds only [0-9A-Fa-f:.]: nothing to escape.
            out.append(f'{{"ip":"{item}","blocked":{"true" if verdict else "false"}}}')
    text = f'{{"version":{number},"results":[{",".join(out)}]}}'
    return Response(
        text.encode(),
        media_type="application/json",
        headers={"x-blocklist-version": str(number), "cache-control": "no-store"},
    )


def _answer_local(
    holder: VersionHolder, parsed: list[tuple[int, int] | str]
) -> tuple[int, list[bool]] | None:
    """(version, blocked per entry) from the served version; None while none is loaded."""
    served = holder.served
    if served is None:
        return None
    wanted = (None if isinstance(address, str) else address for address in parsed)
    return served.version.number, blocked_many(served, holder.control, wanted)


async def _answer_live(
    live: LiveRuntime, holder: VersionHolder, parsed: list[tuple[int, int] | str]
) -> tuple[int, list[bool]] | None:
    """As :func:`_answer_local`, asking Redis; lookups started together share one transaction.

    Raises :class:`BackendUnavailable` when Redis fails or its deadline passes.
    A batch whose answers straddle a version swap is asked again, once.
    """
    control = holder.control
    wanted = [address for address in parsed if not isinstance(address, str)]
    for _ in range(2):
        answers = await asyncio.gather(*(live.lookup(*address) for address in wanted))
        numbers = {number for _, number in answers}
        if len(numbers) <= 1:
            break
    number = max(numbers, key=lambda n: -1 if n is None else n) if numbers else live.ready_version()
    if number is None:
        return None
    found = iter(answers)
    blocked = []
    for address in parsed:
        if isinstance(address, str):
            blocked.append(False)
            continue
        feeds_blocked, _ = next(found)
        verdict = control.verdict(*address) if control.active else None
        blocked.append(feeds_blocked if verdict is None else verdict != "allow")
    return number, blocked
