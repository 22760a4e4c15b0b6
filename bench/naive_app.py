"""Reference "naive": the simplest design of this service, as often written.

A FastAPI ``async def`` route calling a synchronous redis-py ``SISMEMBER`` on
a set of the ipsum addresses (so every Redis round trip blocks the event
loop), run under uvicorn with its default access log. Run:
``uvicorn bench.naive_app:app`` with ``NAIVE_REDIS_URL`` pointing at a Redis
that holds the set ``NAIVE_SET`` (``bench.http_throughput`` fills it).
"""

from __future__ import annotations

import ipaddress
import os

import redis
from fastapi import FastAPI, HTTPException

NAIVE_SET = "naive:blocklist"

app = FastAPI()
_client = redis.Redis.from_url(os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.get("/check_ip/{ip}")
async def check_ip(ip: str) -> dict[str, bool]:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise HTTPException(status_code=422, detail="invalid IP address") from None
    return {"blocked": bool(_client.sismember(NAIVE_SET, ip))}
