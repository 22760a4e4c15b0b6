"""Reference "ceiling": a bare ASGI app answering from a Python set.

No framework, no validation, no ranges: nothing written in Python on the same
server can be much faster. Run: ``uvicorn bench.ceiling_app:app --lifespan off``
with ``CEILING_FEED`` pointing at an ipsum file. ``CEILING_HEADERS=service``
makes it send the service's five response headers instead of one, to measure
what the server charges per header.
"""

from __future__ import annotations

import os
from typing import Any

_FEED = os.environ.get("CEILING_FEED", "../shared/data/ipsum/ipsum-2026-08-22.txt")
with open(_FEED) as _handle:
    BLOCKED = {line.split("\t")[0] for line in _handle if line[:1].isdigit()}

_TRUE = b'{"blocked": true}'
_FALSE = b'{"blocked": false}'
_ONE = [(b"content-type", b"application/json")]
_SERVICE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-length", b"17"),
    (b"cache-control", b"max-age=300"),
    (b"x-blocklist-version", b"1"),
]
_SERVICE = os.environ.get("CEILING_HEADERS") == "service"
_HEADERS_TRUE = _SERVICE_HEADERS if _SERVICE else _ONE
_HEADERS_FALSE = (
    [*_SERVICE_HEADERS[:2], (b"content-length", b"18"), *_SERVICE_HEADERS[3:]] if _SERVICE else _ONE
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"][10:] in BLOCKED:
        headers, body = _HEADERS_TRUE, _TRUE
    else:
        headers, body = _HEADERS_FALSE, _FALSE
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
