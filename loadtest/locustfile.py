"""Locust load test for ``GET /check_ip/{ip}`` with a realistic request mix.

Run from the project's root (see ``loadtest/README.md``)::

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 50 -r 50 -t 30s --host http://localhost:8000

Mix (task weights): 80 % random public IPv4 addresses that are (almost
surely) not listed, 10 % listed addresses, 7 % random global IPv6
addresses, 3 % invalid inputs. Stats are grouped per kind of request
(``/check_ip/[unlisted]``, ``[listed]``, ``[ipv6]``, ``[invalid]``).

A request succeeds when it gets the answer its kind expects: 200 with a
``{"blocked": <bool>}`` body for an address, 422 with
``{"error": "invalid_address", ...}`` for an invalid input. Anything else
(a 200 for an invalid input, a 422 for an address, 503, other statuses,
connection errors) is a failure whose message carries the status.

Environment variables (all optional):

``LOADTEST_LISTED_FILE``
    Listed addresses: one address, or ``ip<TAB>score``, per line; blank
    lines and ``#`` comments skipped, so an ipsum feed file works as is.
    Lines that are not a single address (CIDRs, ranges) are skipped.
    Default: a small built-in sample of the ipsum feed's top entries.
``LOADTEST_EXPECT_LISTED``
    ``1``: a listed address must answer ``{"blocked": true}`` (a false
    answer is a failure). Use it against a deployment known to serve that
    list. Default: any ``blocked`` boolean is accepted.
``LOADTEST_WAIT``
    Wait between a user's requests, in seconds: ``0`` (default, no wait),
    one number (constant) or ``MIN-MAX`` (uniformly between).
``LOADTEST_SEED``
    Seed of the per-user random generators (default ``0``): the same seed
    and user count give the same address sequences.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import random
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, task
from locust.contrib.fasthttp import ResponseContextManager

log = logging.getLogger("loadtest")

#: Top entries of the ipsum snapshot in ``/work/shared/data`` (2026-08-22),
#: used when ``LOADTEST_LISTED_FILE`` is not set.
BUILTIN_LISTED: tuple[str, ...] = (
    "77.90.185.20",
    "77.239.124.102",
    "77.239.124.108",
    "2.57.122.53",
    "45.154.244.193",
    "62.60.130.201",
    "80.82.77.33",
    "193.47.62.69",
    "195.178.110.218",
    "2.57.122.238",
    "16.5.0.132",
    "45.148.10.240",
    "45.198.224.26",
    "62.60.130.242",
    "62.60.130.253",
    "71.6.135.131",
    "85.239.149.72",
    "92.118.39.49",
    "93.174.95.106",
    "164.92.109.155",
)

#: Inputs that are not one plain address; the service must answer 422.
INVALID_INPUTS: tuple[str, ...] = (
    "1.2.3",
    "256.1.1.1",
    "010.1.1.1",
    "not-an-ip",
    "1.2.3.4/24",
    "1.2.3.4.5",
    "1.2.3.-4",
    "0x7f.0.0.1",
    "2001:db8::g",
    "1:2:3:4:5:6:7:8:9",
    "example.com",
    "1.2.3.4-1.2.3.9",
)

#: IPv4 ranges never drawn as "public": IANA special-purpose, multicast, reserved.
_V4_EXCLUDED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
#: Special-purpose blocks inside 2000::/3 (global unicast), never drawn.
_V6_EXCLUDED = ("2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20")
_V6_GLOBAL_PREFIX = 0b001  # 2000::/3

Masks = tuple[tuple[int, int], ...]


def _masks(networks: Iterable[str]) -> Masks:
    """``(network, netmask)`` integer pairs for fast membership tests."""
    nets = (ipaddress.ip_network(n) for n in networks)
    return tuple((int(n.network_address), int(n.netmask)) for n in nets)


V4_EXCLUDED = _masks(_V4_EXCLUDED)
V6_EXCLUDED = _masks(_V6_EXCLUDED)


def _excluded(value: int, masks: Masks) -> bool:
    return any(value & mask == network for network, mask in masks)


def random_public_ipv4(rng: random.Random) -> str:
    """A uniformly random IPv4 address outside every special-purpose range."""
    while True:
        value = rng.getrandbits(32)
        if not _excluded(value, V4_EXCLUDED):
            return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))


def random_global_ipv6(rng: random.Random) -> str:
    """A random address in 2000::/3 outside its special-purpose blocks, compressed form."""
    while True:
        value = (_V6_GLOBAL_PREFIX << 125) | rng.getrandbits(125)
        if not _excluded(value, V6_EXCLUDED):
            return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def _is_address(token: str) -> bool:
    family = socket.AF_INET6 if ":" in token else socket.AF_INET
    try:
        socket.inet_pton(family, token)
    except OSError:
        return False
    return True


def read_listed(lines: Iterable[str]) -> list[str]:
    """Addresses from ``ip`` / ``ip<TAB>score`` lines; comments, blanks and non-addresses skipped."""
    addresses: list[str] = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if fields and _is_address(fields[0]):
            addresses.append(fields[0])
    return addresses


def load_listed() -> list[str]:
    """The listed addresses to query: ``LOADTEST_LISTED_FILE`` or the built-in sample."""
    path = os.environ.get("LOADTEST_LISTED_FILE", "").strip()
    if not path:
        return list(BUILTIN_LISTED)
    with Path(path).open(encoding="utf-8", errors="replace") as lines:
        addresses = read_listed(lines)
    if not addresses:
        raise SystemExit(f"LOADTEST_LISTED_FILE={path}: no addresses found")
    return addresses


def parse_wait(text: str) -> Callable[..., float]:
    """``LOADTEST_WAIT``: ``""``/``0`` no wait, ``0.5`` constant, ``0.1-0.5`` between."""
    text = text.strip()
    try:
        if "-" in text:
            low, high = (float(part) for part in text.split("-", 1))
            if 0 <= low <= high:
                return between(low, high)
        elif float(text or 0) >= 0:
            return constant(float(text or 0))
    except ValueError:
        pass
    raise SystemExit(f"LOADTEST_WAIT={text!r}: use 0, a number of seconds or MIN-MAX")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


LISTED: Sequence[str] = load_listed()
EXPECT_LISTED = _env_flag("LOADTEST_EXPECT_LISTED")
SEED = os.environ.get("LOADTEST_SEED", "0")
WAIT = parse_wait(os.environ.get("LOADTEST_WAIT", "0"))
_user_numbers = itertools.count()


@events.test_start.add_listener
def _log_config(**_kwargs: Any) -> None:
    log.info(
        "check_ip mix: %d listed addresses (expect blocked: %s), seed %s", len(LISTED), EXPECT_LISTED, SEED
    )


def _short(body: bytes | None) -> str:
    return (body or b"")[:120].decode("utf-8", "replace")


def _blocked(body: bytes | None) -> bool | None:
    """The ``blocked`` boolean of a ``{"blocked": <bool>}`` body, else None."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        return None
    value = data.get("blocked") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


def _error_code(body: bytes | None) -> object:
    try:
        data = json.loads(body or b"")
    except ValueError:
        return None
    return data.get("error") if isinstance(data, dict) else None


def judge_address(resp: ResponseContextManager, expect_blocked: bool | None) -> None:
    """A valid address: 200 with a ``blocked`` boolean (``expect_blocked`` if not None)."""
    status = resp.status_code
    if status == 200:
        blocked = _blocked(resp.content)
        if blocked is None:
            resp.failure(f"200 with unexpected body: {_short(resp.content)}")
        elif expect_blocked is not None and blocked is not expect_blocked:
            resp.failure(f"200 blocked={str(blocked).lower()}, expected {str(expect_blocked).lower()}")
        else:
            resp.success()
    elif status == 0:
        resp.failure(f"no response: {resp.error!r}")
    elif status == 422:
        resp.failure(f"422 for a valid address: {_short(resp.content)}")
    else:
        resp.failure(f"HTTP {status}: {_short(resp.content)}")


def judge_invalid(resp: ResponseContextManager) -> None:
    """An invalid input: 422 with ``{"error": "invalid_address", ...}``."""
    status = resp.status_code
    if status == 422:
        code = _error_code(resp.content)
        if code == "invalid_address":
            resp.success()
        else:
            resp.failure(f"422 with error={code!r}, expected 'invalid_address'")
    elif status == 0:
        resp.failure(f"no response: {resp.error!r}")
    elif status == 200:
        resp.failure(f"200 for an invalid input: {_short(resp.content)}")
    else:
        resp.failure(f"HTTP {status}: {_short(resp.content)}")


class CheckIpUser(FastHttpUser):
    """One client calling ``/check_ip`` in a loop; its addresses come from a seeded generator."""

    wait_time = WAIT

    def on_start(self) -> None:
        number = next(_user_numbers)
        self.rng = random.Random(f"{SEED}-{number}")  # noqa: S311 - load mix, not security

    def _check(self, ip: str, name: str) -> ResponseContextManager:
        return self.client.get(f"/check_ip/{ip}", name=f"/check_ip/[{name}]", catch_response=True)

    @task(80)
    def unlisted(self) -> None:
        with self._check(random_public_ipv4(self.rng), "unlisted") as resp:
            judge_address(resp, None)

    @task(10)
    def listed(self) -> None:
        with self._check(self.rng.choice(LISTED), "listed") as resp:
            judge_address(resp, True if EXPECT_LISTED else None)

    @task(7)
    def ipv6(self) -> None:
        with self._check(random_global_ipv6(self.rng), "ipv6") as resp:
            judge_address(resp, None)

    @task(3)
    def invalid(self) -> None:
        with self._check(self.rng.choice(INVALID_INPUTS), "invalid") as resp:
            judge_invalid(resp)
