"""What each layer of a /check_ip request costs, measured in-process.

No server and no sockets: ASGI apps are called directly with a prepared
scope and no-op ``receive``/``send``, and plain functions are timed in loops,
so the figures are the Python cost of each layer alone (the HTTP server's
own cost per request is what ``bench.http_throughput`` adds on top).
Variants are timed in alternation (A B C ... A B C ...) over several rounds
and the median per request is reported, with the difference to the layer
below it.

Layers, from the bottom:

- ``parse``: ``parse_address`` (``inet_pton`` and ``int.from_bytes``);
- ``lookup``: ``parse`` plus the binary search over the ipsum index;
- ``check_ip``: the whole answer (status, precomputed headers and body);
- ``metrics``: what the fast path adds per request for Prometheus (two
  ``perf_counter`` calls, a route-stats lookup, a histogram observe, a
  lookup counter);
- ``json``: ``json.dumps`` of the answer, which the precomputed body avoids;
- ``log-line``: one JSON access-log line through ``logging`` (to memory);
- ``ceiling-asgi``: the bare ASGI reference app (set lookup, two sends);
- ``fastpath-asgi``: our ASGI fast path in front of FastAPI, as served;
- ``fastapi-route``: the documented FastAPI route (routing, dependency
  resolution, path validation, response object) answering the same way;
- ``fastapi-dict``: a FastAPI route returning a ``dict`` (JSON response
  serialization and response-model validation) from a Python set;
- ``fastapi-middleware``: ``fastapi-route`` behind one ``@app.middleware``
  (``BaseHTTPMiddleware``), the usual way to add per-request code;
- ``fastapi-accesslog``: ``fastapi-route`` plus one JSON access-log line per
  request through ``logging`` (to a null stream).

    .venv/bin/python -m bench.layers --rounds 7
    .venv/bin/python -m bench.layers --quick   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from bench.versions import ipsum_addresses, ipsum_version
from blocklist.addresses import parse_address
from blocklist.logs import JsonFormatter
from blocklist.settings import Settings
from ipchecking.answers import check_ip
from ipchecking.app import create_app

Scope = dict[str, Any]
NextHandler = Callable[[Request], Awaitable[Response]]


def addresses(count: int, seed: int = 5) -> list[str]:
    """Half ipsum addresses, half random IPv4 (some listed by chance), shuffled."""
    rng = random.Random(seed)
    listed = ipsum_addresses()
    out = rng.sample(listed, count // 2)
    out += [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(count - len(out))]
    rng.shuffle(out)
    return out


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def http_scope(path: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per variant per round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2,000: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 2, 2_000
    sample = addresses(args.requests)
    paths = [f"/check_ip/{a}" for a in sample]
    scopes = [http_scope(p) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        version = ipsum_version()
        app = create_app(Settings(bootstrap=False, state_dir=Path(tmp)))
        app.holder.swap(version)
        holder, stats, api = app.holder, app.stats, app.app
        listed_set = set(ipsum_addresses())

        # Variant apps built on the same FastAPI app object.
        plain = FastAPI()

        @plain.get("/check_ip/{ip}")
        async def as_dict(ip: str) -> dict[str, bool]:
            return {"blocked": ip in listed_set}

        with_middleware = create_app(Settings(bootstrap=False, state_dir=Path(tmp)))
        with_middleware.holder.swap(version)

        @with_middleware.app.middleware("http")
        async def passthrough(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            return await call_next(request)

        access = logging.getLogger("bench.access")
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(JsonFormatter())
        access.addHandler(handler)
        access.propagate = False
        access.setLevel(logging.INFO)

        async def with_access_log(scope: Scope, receive: Any, send: Any) -> None:
            status = 0

            async def noting(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await api(scope, receive, noting)
            access.info("request", extra={"path": scope["path"], "status": status})
            handler.stream.seek(0)
            handler.stream.truncate()

        from bench.ceiling_app import app as ceiling  # noqa: PLC0415 - reads its feed at import

        perf = time.perf_counter

        def metrics_only(_: str) -> None:
            start = perf()
            stats.lookups["allowed"] += 1
            stats.route("/check_ip/{ip}", "GET", 200).observe(perf() - start)

        def log_line(text: str) -> None:
            access.info("request", extra={"path": "/check_ip/" + text, "status": 200})
            handler.stream.seek(0)
            handler.stream.truncate()

        plain_variants: dict[str, Callable[[str], object]] = {
            "parse": parse_address,
            "lookup": lambda text: version.index.contains(*parse_address(text)),
            "check_ip": lambda text: check_ip(holder, text),
            "metrics": metrics_only,
            "json": lambda text: json.dumps({"blocked": text in listed_set}).encode(),
            "log-line": log_line,
        }
        asgi_variants: dict[str, Any] = {
            "ceiling-asgi": ceiling,
            "fastpath-asgi": app,
            "fastapi-route": api,
            "fastapi-dict": plain,
            "fastapi-middleware": with_middleware.app,
            "fastapi-accesslog": with_access_log,
        }

        async def run_asgi(target: Any) -> float:
            start = time.perf_counter()
            for scope in scopes:
                await target(dict(scope), _receive, _send)
            return (time.perf_counter() - start) / len(scopes)

        def run_plain(target: Callable[[str], object]) -> float:
            start = time.perf_counter()
            for text in sample:
                target(text)
            return (time.perf_counter() - start) / len(sample)

        async def check(target: Any) -> None:
            """Sanity: the variant answers 200 with the right body before it is timed."""
            sent: list[dict[str, Any]] = []

            async def keep(message: dict[str, Any]) -> None:
                sent.append(message)

            await target(http_scope("/check_ip/" + sample[0]), _receive, keep)
            want = json.dumps({"blocked": sample[0] in listed_set}).encode()
            assert sent[0]["status"] == 200, sent
            body = b"".join(m.get("body", b"") for m in sent[1:])
            assert json.loads(body) == json.loads(want), sent

        async def measure() -> dict[str, list[float]]:
            # No lifespan: nothing is synced; every app serves the ipsum version.
            results: dict[str, list[float]] = {n: [] for n in [*plain_variants, *asgi_variants]}
            for target in asgi_variants.values():
                await check(target)
                await run_asgi(target)  # warm-up
            for _ in range(args.rounds):
                for name, fn in plain_variants.items():
                    results[name].append(run_plain(fn))
                for name, target in asgi_variants.items():
                    results[name].append(await run_asgi(target))
            return results

        results = asyncio.run(measure())
    med = {name: statistics.median(values) * 1e9 for name, values in results.items()}
    print(f"{args.requests} distinct addresses per variant, {args.rounds} rounds alternated; ns per request")
    rows = [
        ("parse", None),
        ("lookup", "parse"),
        ("check_ip", "lookup"),
        ("metrics", None),
        ("json", None),
        ("log-line", None),
        ("ceiling-asgi", None),
        ("fastpath-asgi", "ceiling-asgi"),
        ("fastapi-route", "fastpath-asgi"),
        ("fastapi-dict", "ceiling-asgi"),
        ("fastapi-middleware", "fastapi-route"),
        ("fastapi-accesslog", "fastapi-route"),
    ]
    print(f"{'layer':<20}{'ns/req':>10}{'vs':>16}{'added ns':>10}")
    for name, base in rows:
        added = f"{med[name] - med[base]:>10.0f}" if base else f"{'':>10}"
        print(f"{name:<20}{med[name]:>10.0f}{base or '':>16}{added}")


if __name__ == "__main__":
    main()
