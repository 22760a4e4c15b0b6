"""The ASGI application factory.

``create_app()`` builds everything from settings; nothing is opened until
the app's lifespan starts (the runtime's clients, scheduler and lock), and
all of it is closed when the lifespan ends.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, CollectorRegistry
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from blocklist import __version__
from blocklist.controlstores import control_store
from blocklist.decision import ControlView
from blocklist.settings import Settings
from ipchecking import (
    batchroutes,
    changesroutes,
    controlroutes,
    crowdsecroutes,
    exportroutes,
    historyroutes,
    iprepdroutes,
    routes,
)
from ipchecking.auth import ApiKeys
from ipchecking.controlservice import ControlService
from ipchecking.controlsync import ControlSync
from ipchecking.crowdsecpulls import RedisPulls, SqlitePulls
from ipchecking.distributed import DistributedRuntime
from ipchecking.embedded import EmbeddedRuntime
from ipchecking.fastpath import FastPathApp
from ipchecking.historysource import RedisSource, SqliteSource
from ipchecking.holder import VersionHolder
from ipchecking.live import LiveRuntime
from ipchecking.metrics import ControlCollector, RedisCollector, RequestStats, VersionCollector

log = logging.getLogger(__name__)

DESCRIPTION = """Answers, on the hot path of logins, signups and API calls, whether a
client address is listed by public blocklists (stamparm/ipsum by default;
Spamhaus DROP/EDROP/DROPv6 and FireHOL netsets optionally)."""


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> FastPathApp:
    """Build the service's ASGI app (fast path in front of FastAPI).

    ``settings`` defaults to the environment (``REDIS_URL`` set: distributed
    mode, serving what the updater worker publishes); ``transport`` replaces
    the network for feed downloads in embedded mode (tests); ``clock`` is
    the time overrides expire and reputation recovers by (tests).
    """
    settings = settings or Settings()
    view = ControlView(settings.reputation_ipv6_prefix, clock)
    holder = VersionHolder(settings.cache_max_age, view)
    keys = ApiKeys.from_settings(settings)
    stats = RequestStats()
    registry = CollectorRegistry()
    registry.register(stats)
    registry.register(VersionCollector(holder))
    # Runtimes open nothing until start(): clients, tasks and locks belong
    # to the lifespan.
    runtime: EmbeddedRuntime | DistributedRuntime | LiveRuntime
    live: LiveRuntime | None = None
    if settings.embedded:
        runtime = EmbeddedRuntime(settings, holder, transport=transport)
    elif settings.lookup == "live":
        runtime = live = LiveRuntime(settings)
    else:
        runtime = DistributedRuntime(settings, holder)
    store = control_store(
        settings, None if isinstance(runtime, EmbeddedRuntime) else runtime.link.connector, clock=clock
    )
    # A blocking read of the change log ends well before the Redis socket timeout.
    sync = ControlSync(store, view, keys, read_wait=min(1.0, settings.redis_timeout / 2))
    registry.register(ControlCollector(sync))
    if isinstance(runtime, EmbeddedRuntime):
        runtime.purge_also = store.purge
    # The default registry holds the sync pipeline's metrics (and the
    # process collectors): exported here only where the updater runs in this
    # process. API replicas export the process collectors alone, so they never
    # report a sync state that belongs to the worker.
    registries: tuple[CollectorRegistry, ...] = (registry, REGISTRY)
    if not isinstance(runtime, EmbeddedRuntime):
        registry.register(RedisCollector(runtime.link))
        process = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            process.register(collector)
        registries = (registry, process)

    mode = "embedded" if settings.embedded else f"distributed ({settings.lookup} lookups)"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        await sync.start(settings.redis_timeout)
        # Everything built so far (modules, the app, a loaded version) lives
        # as long as the process: moved out of the collector's sight, a full
        # collection scans only what requests allocate, and its pauses stay
        # far below the live lookups' deadline.
        gc.collect()
        gc.freeze()
        log.info("service started", extra={"mode": mode, "pid": os.getpid()})
        try:
            yield
        finally:
            await sync.stop()
            await runtime.stop()
            log.info("service stopped", extra={"mode": mode, "pid": os.getpid()})

    api = FastAPI(
        title="IP blocklist service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.holder = holder
    api.state.stats = stats
    api.state.registries = registries
    api.state.runtime = runtime
    api.state.live = live
    api.state.keys = keys
    api.state.export_tags = exportroutes.OverrideTag()
    api.state.change_memo = changesroutes.ChangeMemo()
    api.state.decision_sets = crowdsecroutes.DecisionSets()
    api.state.control = ControlService(settings, store, sync)
    api.state.history = (
        SqliteSource(runtime.history)
        if isinstance(runtime, EmbeddedRuntime)
        else RedisSource(runtime.link.connector.reader)
    )
    api.state.crowdsec_pulls = (
        SqlitePulls(settings.state_dir)
        if isinstance(runtime, EmbeddedRuntime)
        else RedisPulls(runtime.link.connector.primary)
    )
    api.include_router(routes.router)
    api.include_router(batchroutes.router)
    api.include_router(exportroutes.router)
    api.include_router(changesroutes.router)
    api.include_router(historyroutes.router)
    api.include_router(controlroutes.router)
    api.include_router(iprepdroutes.router)
    api.include_router(crowdsecroutes.router)
    api.add_exception_handler(Exception, _internal_error)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(controlroutes.AccessDenied, controlroutes.access_denied)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    for backend_error in (RedisError, sqlite3.Error, OSError):
        api.add_exception_handler(backend_error, _backend_unavailable)
    return FastPathApp(api, holder, stats, live, keys)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A bad query or path parameter: 422 in the service's own error shape, not FastAPI's."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5]) or str(exc)
    return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing and body errors: FastAPI's answers, except where they would mislead.

    A body that cannot even be decoded is a bad body like any other (422 in
    the service's shape, not a bare 400), and a 405 lists in ``Allow`` every
    method the path has, not only those of the first route declaring it.
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        detail = "the body could not be read as JSON"
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)
    if exc.status_code == 405:
        methods: set[str] = set()
        for route in request.app.router.routes:
            match, _ = route.matches(request.scope)
            if match != Match.NONE and isinstance(route, APIRoute):
                methods |= route.methods or set()
        allow = ", ".join(sorted(methods))
        body = {"error": "method_not_allowed", "detail": f"this path answers {allow}"}
        return JSONResponse(body, status_code=405, headers={"allow": allow})
    return await http_exception_handler(request, exc)


async def _backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The store of operator data failed: 503 with the reason, retry later."""
    log.warning("control store unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
    detail = "the store of overrides and reputation is unavailable; retry shortly"
    return JSONResponse(
        {"error": "backend_unavailable", "detail": detail}, status_code=503, headers={"retry-after": "5"}
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Never a traceback to the client; the error is logged by the server.
    return JSONResponse({"error": "internal", "detail": "internal error"}, status_code=500)
