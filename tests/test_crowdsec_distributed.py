"""The CrowdSec bouncer API in distributed mode: the pull point of a key is shared by every
API replica (kept in Redis), so a bouncer behind a load balancer gets each change once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.blocklistupdater.support import run_module
from tests.ipchecking.apphelpers import running
from tests.ipchecking.controlhelpers import make_key
from tests.redisserver import RedisServer

pytestmark = pytest.mark.integration
STREAM = "/crowdsec/v1/decisions/stream"


def test_replicas_share_each_keys_pull_point(
    tmp_path: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, replica = primary_and_replica
    feed = tmp_path / "feed.txt"
    feed.write_text("192.0.2.1\n198.51.100.0/24\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKLIST_", "REDIS_"))} | {
        "REDIS_URL": primary.url,
        "BLOCKLIST_FEEDS": f"local=plain:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "worker-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
    }
    assert run_module(env, "--once").returncode == 0
    settings = Settings(redis_url=primary.url, redis_read_url=replica.url, bootstrap=False)
    key = make_key(settings, "edge", "bouncer")
    headers = {"X-Api-Key": key}
    params = {"scopes": "ip,range"}

    async def check() -> None:
        async with running(create_app(settings)) as one, running(create_app(settings)) as two:
            start: dict[str, Any] = (
                await one.get(STREAM, params={**params, "startup": "true"}, headers=headers)
            ).json()
            assert {d["value"] for d in start["new"]} == {"192.0.2.1", "198.51.100.0/24"}
            assert (await two.get(STREAM, params=params, headers=headers)).json() == {
                "new": None,
                "deleted": None,
            }
            feed.write_text("192.0.2.1\n198.51.100.0/25\n203.0.113.5\n")
            assert run_module(env, "--once").returncode == 0
            for _ in range(100):  # until the replica has the new version's history
                changed = (await two.get(STREAM, params=params, headers=headers)).json()
                if changed["new"]:
                    break
                await asyncio.sleep(0.05)
            assert {d["value"] for d in changed["new"]} == {"198.51.100.0/25", "203.0.113.5"}
            assert {d["value"] for d in changed["deleted"]} == {"198.51.100.0/24"}
            assert (await one.get(STREAM, params=params, headers=headers)).json() == {
                "new": None,
                "deleted": None,
            }

    asyncio.run(check())
