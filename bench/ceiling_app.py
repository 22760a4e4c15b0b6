"""Reference "ceiling": a bare ASGI app answering from a Python set.

No framework, no validation, no ranges: nothing written in Python on the same
server can be much faster. Run: ``uvicorn bench.ceiling_app:app --lifespan off``
with ``CEILING_FEED`` pointing at an ipsum file.
"""

from __future__ import annotations

import os
from typing import Any

_FEED = os.environ.get("CEILING_FEED", "../shared/data/ipsum/ipsum-2026-08-22.txt")
with open(_FEED) as _handle:
    BLOCKED = {line.split("\t")[0] for line in _handle if line[:1].isdigit()}

_HEADERS = [(b"content-type", b"application/json")]
_TRUE = b'{"blocked": true}'
_FALSE = b'{"blocked": false}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = _TRUE if scope["path"][10:] in BLOCKED else _FALSE
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})
