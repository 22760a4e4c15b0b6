"""The answer to ``/check_ip/{ip}``, as status, raw headers and body bytes.

One function serves both the lean ASGI fast path and the documented FastAPI
route, so they cannot disagree. Bodies are precomputed bytes; nothing is
serialized per request on the success path.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from blocklist.addresses import V4, parse_address
from blocklist.errors import BackendUnavailable, InvalidAddress
from blocklist.u128 import LOW, V6_SLOT_LOW_SHIFT
from ipchecking.holder import ALLOWED_BODY, BLOCKED_BODY, JSON_HEADERS, SLOT_SHIFT, VersionHolder

if TYPE_CHECKING:
    from collections.abc import Iterable

    from blocklist.decision import ControlView
    from ipchecking.holder import Served
    from ipchecking.live import LiveRuntime

Headers = list[tuple[bytes, bytes]]
NO_DATA_REASON = "no blocklist version is loaded yet; retry shortly"


def error_body(status: int, error: str, detail: str) -> tuple[int, Headers, bytes]:
    """A JSON error answer: ``{"error": <code>, "detail": <reason>}``."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    # Errors are never cached: a 503 ends when data arrives, and a proxy
    # must not keep serving one.
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    if status == 503:
        headers.append((b"retry-after", b"5"))
    return status, headers, body


NO_DATA = error_body(503, "no_data", NO_DATA_REASON)
Answer = tuple[int, Headers, bytes, str]


def check_ip(holder: VersionHolder, text: str) -> Answer:
    """Answer one lookup: ``(status, headers, body, result)``.

    ``result`` is one of ``blocked``, ``allowed``, ``invalid``,
    ``unavailable`` (for metrics). Never raises for any client input.
    """
    try:
        family, value = parse_address(text)
    except InvalidAddress as exc:
        status, headers, body = error_body(422, "invalid_address", exc.reason)
        return status, headers, body, "invalid"
    served = holder.served
    if served is None:
        return (*NO_DATA, "unavailable")
    control = holder.control
    if control.active:
        verdict = control.verdict(family, value)
        if verdict is not None:
            if verdict == "allow":
                return 200, served.allowed_headers, ALLOWED_BODY, "allowed"
            return 200, served.blocked_headers, BLOCKED_BODY, "blocked"
    if family == V4:
        slot = value >> SLOT_SHIFT
        i = bisect_right(served.v4_firsts, value, served.v4_slots[slot], served.v4_slots[slot + 1]) - 1
        if i >= 0 and value <= served.v4_lasts[i]:
            return 200, served.blocked_headers, BLOCKED_BODY, "blocked"
        return 200, served.allowed_headers, ALLOWED_BODY, "allowed"
    small = served.v6_small
    if small is not None:
        i = bisect_right(small[0], value) - 1
        if i >= 0 and value <= small[1][i]:
            return 200, served.blocked_headers, BLOCKED_BODY, "blocked"
        return 200, served.allowed_headers, ALLOWED_BODY, "allowed"
    # blocklist.u128.find_u128, inlined: bounds are 64-bit halves (low ones read only on a tie).
    high = value >> 64
    highs = served.v6_first_hi
    slot = high >> V6_SLOT_LOW_SHIFT
    i = bisect_right(highs, high, served.v6_slots[slot], served.v6_slots[slot + 1]) - 1
    if i >= 0 and highs[i] == high and served.v6_first_lo[i] > value & LOW:
        i = bisect_right(served.v6_first_lo, value & LOW, bisect_left(highs, high, 0, i), i) - 1
    if i >= 0:
        last_high = served.v6_last_hi[i]
        if last_high > high or (last_high == high and served.v6_last_lo[i] >= value & LOW):
            return 200, served.blocked_headers, BLOCKED_BODY, "blocked"
    return 200, served.allowed_headers, ALLOWED_BODY, "allowed"


def blocked_many(
    served: Served, control: ControlView, addresses: Iterable[tuple[int, int] | None]
) -> list[bool]:
    """The answers :func:`check_ip` gives for parsed addresses, as bools (None: False), for
    batches and consumers: the same decision, IPv4 searched as on the hot path. O(n log r)."""
    firsts, lasts, slots = served.v4_firsts, served.v4_lasts, served.v4_slots
    v6 = served.version.index.v6
    verdict = control.verdict if control.active else None
    out: list[bool] = []
    append = out.append
    for address in addresses:
        if address is None:
            append(False)
            continue
        family, value = address
        if verdict is not None:
            decided = verdict(family, value)
            if decided is not None:
                append(decided != "allow")
                continue
        if family == V4:
            slot = value >> SLOT_SHIFT
            i = bisect_right(firsts, value, slots[slot], slots[slot + 1]) - 1
            append(i >= 0 and value <= lasts[i])
        else:
            append(v6.find(value) >= 0)
    return out


async def check_ip_live(live: LiveRuntime, text: str, control: ControlView) -> Answer:
    """Answer one lookup by asking Redis (live mode); same contract as :func:`check_ip`.

    Overrides and reputation come from the process's ``control`` view, as
    in local mode; Redis is asked for the feeds' answer (and the version
    number of the headers). A Redis failure or timeout gives 503
    ``backend_unavailable`` with the reason.
    """
    try:
        family, value = parse_address(text)
    except InvalidAddress as exc:
        status, headers, body = error_body(422, "invalid_address", exc.reason)
        return status, headers, body, "invalid"
    verdict = control.verdict(family, value) if control.active else None
    try:
        blocked, number = await live.lookup(family, value)
    except BackendUnavailable as exc:
        status, headers, body = error_body(503, "backend_unavailable", str(exc))
        return status, headers, body, "unavailable"
    if number is None:
        return (*NO_DATA, "unavailable")
    blocked_headers, allowed_headers = live.headers_for(number)
    if verdict is not None:
        blocked = verdict != "allow"
    if blocked:
        return 200, blocked_headers, BLOCKED_BODY, "blocked"
    return 200, allowed_headers, ALLOWED_BODY, "allowed"
