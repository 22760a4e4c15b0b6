"""API keys: who a request is, what it may do, and which paths need a key at all.

Keys are never held in clear: ``BLOCKLIST_API_KEYS`` lists SHA-256 hex
digests (these keys act as ``admin``), and keys made with ``python -m
ipchecking keys create`` are stored as digests with a name and a scope
(state directory or Redis), followed by every API process within a second.
A request presents its key as ``Authorization: Bearer <key>``, ``X-API-Key:
<key>`` or, for iprepd clients, ``Authorization: APIKey <key>``; its digest
is compared with every known digest in constant time (``hmac.compare_digest``,
all of them, no early exit).

Scopes are ordered: ``bouncer`` < ``read`` < ``report`` < ``admin``; a
key's scope grants those below it. ``BLOCKLIST_PROTECT`` says which reads
need a key (``read`` or above): ``none``; ``status`` (everything but
``/check_ip`` and the probes ``/healthz`` and ``/readyz``); ``all`` (also
``/check_ip``). Writes always need their scope: reports ``report``,
overrides and the audit log ``admin``. The CrowdSec decision API under
``/crowdsec/`` always needs a key, ``bouncer`` or above, whatever
``BLOCKLIST_PROTECT`` says; a ``bouncer`` key opens nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

from blocklist.control import SCOPES, ApiKey, Scope
from blocklist.settings import Settings

#: Paths that never need a key: what orchestrators probe.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/iprepd/__lbheartbeat__", "/iprepd/__heartbeat__", "/iprepd/__version__"}
)
#: Paths under which routes check keys themselves (the CrowdSec API: always a key).
SELF_CHECKED_PREFIX = "/crowdsec/"
#: Paths of lookups other than ``/check_ip``: protected exactly as it is.
LOOKUP_PATHS = frozenset({"/v1/check"})
#: Name of the keys configured in ``BLOCKLIST_API_KEYS`` (in the audit log).
CONFIGURED = "configured-key"
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


def grants(held: Scope, needed: Scope) -> bool:
    """True if a key of scope ``held`` may do what needs ``needed``."""
    return SCOPES.index(held) >= SCOPES.index(needed)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's name and scope."""

    name: str
    scope: Scope


class ApiKeys:
    """The access rule of one app: which paths need a key, and the valid keys.

    ``stored`` is replaced whole (:meth:`replace_stored`) when keys are
    created or revoked; a lookup reads it once.
    """

    def __init__(self, digests: Iterable[str], protect: str) -> None:
        self._configured = tuple((bytes.fromhex(d), Principal(CONFIGURED, "admin")) for d in digests)
        self._stored: dict[str, tuple[bytes, Principal]] = {}
        self._all = self._configured
        self.protects_lookups = protect == "all"
        self.protects_status = protect in {"status", "all"}

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The rule ``BLOCKLIST_API_KEYS`` and ``BLOCKLIST_PROTECT`` describe."""
        return cls(settings.api_keys, settings.protect)

    def replace_stored(self, stored: Iterable[ApiKey]) -> None:
        """Accept exactly the ``stored`` keys (besides the configured ones) from now on."""
        self._stored = {k.name: (bytes.fromhex(k.digest), Principal(k.name, k.scope)) for k in stored}
        self._all = self._configured + tuple(self._stored.values())

    def put_stored(self, key: ApiKey | None, name: str) -> None:
        """Accept ``key`` (None: stop accepting the key called ``name``)."""
        stored = dict(self._stored)
        if key is None:
            stored.pop(name, None)
        else:
            stored[name] = (bytes.fromhex(key.digest), Principal(key.name, key.scope))
        self._stored = stored
        self._all = self._configured + tuple(stored.values())

    def needs_key(self, path: str) -> bool:
        """True if reading ``path`` (other than a lookup) needs a key.

        Lookups (``/check_ip`` and :data:`LOOKUP_PATHS`) need one exactly when
        ``protects_lookups`` is set.
        """
        if path in LOOKUP_PATHS:
            return self.protects_lookups
        if path.startswith(SELF_CHECKED_PREFIX):
            return False
        return self.protects_status and path not in OPEN_PATHS

    def identify(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal | None:
        """The principal whose key the raw ASGI ``headers`` present, or None."""
        presented = presented_key(headers)
        if presented is None:
            return None
        digest = hashlib.sha256(presented).digest()
        found: Principal | None = None
        for known, principal in self._all:
            if hmac.compare_digest(digest, known):
                found = principal
        return found

    def allows(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """True if the raw ASGI ``headers`` present a valid key that may read (``read`` or above)."""
        principal = self.identify(headers)
        return principal is not None and grants(principal.scope, "read")


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents (Bearer, APIKey or X-API-Key), if any."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            return value.strip()
        if lowered == b"authorization":
            kind, _, rest = value.strip().partition(b" ")
            if kind.lower() in {b"bearer", b"apikey"}:
                return rest.strip()
    return None
