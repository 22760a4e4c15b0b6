"""API keys: which requests need one, and whether the one presented is valid.

Keys are configured as SHA-256 hex digests (``BLOCKLIST_API_KEYS``), never
in clear, so a leaked configuration does not leak a key. A request presents
its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; its
digest is compared with every configured digest in constant time
(``hmac.compare_digest``, all of them, no early exit).

``BLOCKLIST_PROTECT`` says which endpoints need a key: ``none``; ``status``
(``/status``, ``/metrics``, ``/docs``, ``/openapi.json``); ``all`` (those
and ``/check_ip``). The probes ``/healthz`` and ``/readyz`` never do. No
endpoint changes state today; any that does will always need a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from blocklist.settings import Settings

#: Paths that never need a key: what orchestrators probe.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
UNAUTHORIZED_BODY = json.dumps({"error": "unauthorized", "detail": "a valid API key is required"}).encode()
UNAUTHORIZED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
    (b"www-authenticate", b"Bearer"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


def key_digest(key: str) -> str:
    """The SHA-256 hex digest to configure for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The access rule of one app: which paths need a key, and the valid digests."""

    def __init__(self, digests: Iterable[str], protect: str) -> None:
        self._digests = tuple(bytes.fromhex(d) for d in digests)
        self.protects_lookups = protect == "all"
        self.protects_status = protect in {"status", "all"}

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The rule ``BLOCKLIST_API_KEYS`` and ``BLOCKLIST_PROTECT`` describe."""
        return cls(settings.api_keys, settings.protect)

    def needs_key(self, path: str) -> bool:
        """True if a request for ``path``, other than a lookup, must present a key.

        Lookups need one exactly when ``protects_lookups`` is set.
        """
        return self.protects_status and path not in OPEN_PATHS

    def allows(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """True if the raw ASGI ``headers`` present a configured key."""
        presented = _presented_key(headers)
        if presented is None:
            return False
        digest = hashlib.sha256(presented).digest()
        valid = False
        for known in self._digests:
            valid |= hmac.compare_digest(digest, known)
        return valid


def _presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            return value.strip()
        if lowered == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None
