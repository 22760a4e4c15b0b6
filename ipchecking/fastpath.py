"""A lean ASGI layer in front of the FastAPI app.

``GET``/``HEAD /check_ip/<ip>`` is answered here directly: no routing,
dependency resolution, middleware stack or response objects, only the
lookup and two ``send`` calls with precomputed bytes. Everything else passes
through to FastAPI, timed per route for the request metrics. The documented
FastAPI route for ``/check_ip/{ip}`` gives the same answers (same function),
so the OpenAPI schema stays true.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipchecking.answers import check_ip, check_ip_live
from ipchecking.auth import UNAUTHORIZED_BODY, UNAUTHORIZED_HEADERS, ApiKeys
from ipchecking.holder import VersionHolder
from ipchecking.live import LiveRuntime
from ipchecking.metrics import RequestStats, RouteStats

CHECK_PREFIX = "/check_ip/"
CHECK_ROUTE = "/check_ip/{ip}"
_PREFIX_LEN = len(CHECK_PREFIX)
_ROUTE_LABELS = {"/check_ip/{ip:path}": CHECK_ROUTE}


class FastPathApp:
    """ASGI app: fast ``/check_ip/`` in front, ``app`` for the rest.

    Lookups are answered from ``holder`` (local), or by asking Redis when a
    ``live`` runtime is given. ``keys`` says which requests need an API key
    (default: none); a request without a valid one gets 401.
    """

    def __init__(
        self,
        app: ASGIApp,
        holder: VersionHolder,
        stats: RequestStats,
        live: LiveRuntime | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        self.app = app
        self.holder = holder
        self.stats = stats
        self.live = live
        self.keys = keys or ApiKeys((), "none")
        # Looked up once per request: cached here, not rebuilt from labels.
        self._lookups = stats.lookups
        self._check_routes: dict[tuple[str, int], RouteStats] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        start = perf_counter()
        if path.startswith(CHECK_PREFIX) and (method in {"GET", "HEAD"}):
            if self.keys.protects_lookups and not self.keys.allows(scope["headers"]):
                await self._unauthorized(send, CHECK_ROUTE, method, start)
                return
            if self.live is None:
                status, headers, body, result = check_ip(self.holder, path[_PREFIX_LEN:])
            else:
                status, headers, body, result = await check_ip_live(
                    self.live, path[_PREFIX_LEN:], self.holder.control
                )
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body if method == "GET" else b""})
            self._lookups[result] += 1
            route = self._check_routes.get((method, status))
            if route is None:
                route = self._check_routes[method, status] = self.stats.route(CHECK_ROUTE, method, status)
            route.observe(perf_counter() - start)
            return
        if self.keys.needs_key(path) and not self.keys.allows(scope["headers"]):
            await self._unauthorized(send, "<unauthorized>", method, start)
            return
        status_seen = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "<unmatched>"
            # The documented route is declared as {ip:path}; label it as the fast path does.
            name = _ROUTE_LABELS.get(name, name)
            self.stats.route(name, method, status_seen).observe(perf_counter() - start)

    async def _unauthorized(self, send: Send, route: str, method: str, start: float) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": UNAUTHORIZED_HEADERS})
        await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY if method != "HEAD" else b""})
        self.stats.route(route, method, 401).observe(perf_counter() - start)
