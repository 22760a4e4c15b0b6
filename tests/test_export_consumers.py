"""Exports checked by the tools that consume them, fetched from a real server process.

One API process (embedded mode, a generated feed of about ten thousand
networks, one allow and one manual block) serves every format. Each file
is then given to its consumer: nginx runs with the geo include and is
asked about addresses inside, at the edges of and outside the networks;
``haproxy -c`` checks the ACL file; ``nft -f`` (after ``nft -c -f``) and
``ipset restore`` (twice: the second swaps over the first) load their
files in a network namespace of the test's own, and what the kernel holds
is compared with the exported networks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ipchecking.auth import key_digest
from tests.apiprocess import server, wait_ready
from tests.redisserver import free_port, stop_process

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-key-of-the-export-test"
ALLOWED = "10.0.0.128/25"  # a hole in the feed's 10.0.0.0/24
BLOCKED = "203.0.113.0/24"  # a manual block outside the feed
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def feed_lines(seed: int = 7) -> list[str]:
    """About ten thousand IPv4 addresses and networks (some overlapping or adjacent) and some IPv6."""
    rng = random.Random(seed)
    lines = ["10.0.0.0/24", "10.0.1.0/24", "198.51.100.7"]
    for _ in range(12_000):
        prefix = rng.choice([32, 32, 32, 28, 24, 20])
        lines.append(
            str(ipaddress.ip_network((rng.getrandbits(32) >> (32 - prefix) << (32 - prefix), prefix)))
        )
    for _ in range(200):
        prefix = rng.choice([128, 64, 48])
        lines.append(
            str(ipaddress.ip_network((rng.getrandbits(128) >> (128 - prefix) << (128 - prefix), prefix)))
        )
    return lines


def expected_spans(lines: list[str]) -> set[Net]:
    """What must be exported: the feed plus the manual block, minus the allow, collapsed."""
    nets = [ipaddress.ip_network(line) for line in lines] + [ipaddress.ip_network(BLOCKED)]
    allowed = ipaddress.IPv4Network(ALLOWED)
    out: list[Net] = []
    for net in nets:
        if not isinstance(net, ipaddress.IPv4Network) or not net.overlaps(allowed):
            out.append(net)
        elif net.supernet_of(allowed) and net != allowed:
            out += net.address_exclude(allowed)
            # else: inside the allow, not exported
    v4 = [n for n in out if n.version == 4]
    v6 = [n for n in out if n.version == 6]
    return set(ipaddress.collapse_addresses(v4)) | set(ipaddress.collapse_addresses(v6))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Path], list[str]]]:
    """Every format exported by a real server into files: ``({format: path}, feed lines)``."""
    root = tmp_path_factory.mktemp("exports")
    lines = feed_lines()
    (root / "feed.txt").write_text("\n".join(lines) + "\n")
    env = {
        "BLOCKLIST_FEEDS": f"generated=plain:{root / 'feed.txt'}",
        "BLOCKLIST_STATE_DIR": str(root / "state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_API_KEYS": key_digest(ADMIN_KEY),
    }
    with server(env, root / "server.log") as (base, proc):
        wait_ready(base, proc)
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for network, action in ((ALLOWED, "allow"), (BLOCKED, "block")):
            created = httpx.post(
                f"{base}/v1/overrides", json={"network": network, "action": action}, headers=auth
            )
            assert created.status_code == 201, created.text
        paths = {}
        for fmt in ("plain", "json", "nginx", "haproxy", "nftables", "ipset"):
            path = paths[fmt] = root / f"blocklist.{fmt}"
            with httpx.stream("GET", f"{base}/v1/export", params={"format": fmt}) as answer:
                assert answer.status_code == 200
                # Streamed: no length known up front, several chunks on the wire.
                assert answer.headers.get("transfer-encoding") == "chunked"
                assert "content-length" not in answer.headers
                chunks = list(answer.iter_raw())
            assert len(chunks) > 1 or path.suffix == ".json"
            path.write_bytes(b"".join(chunks))
        yield paths, lines


def run(*command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output unless it exits 0."""
    assert shutil.which(command[0]) or command[0] == "ip", f"{command[0]} is not installed"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(command)}: {done.stdout}{done.stderr}"
    return done  # type: ignore[no-any-return]


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A network namespace of this test's own (its own nftables and ipset state)."""
    name = f"blocklist-test-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def test_the_plain_export_is_exactly_the_blocked_networks(exports: tuple[dict[str, Path], list[str]]) -> None:
    paths, lines = exports
    exported = [ipaddress.ip_network(n) for n in paths["plain"].read_text().split()]
    assert len(exported) == len(set(exported))
    assert set(exported) == expected_spans(lines)
    document = json.loads(paths["json"].read_text())
    assert [ipaddress.ip_network(n) for n in document["networks"]] == exported


def test_nginx_loads_the_geo_file_and_answers_from_it(
    exports: tuple[dict[str, Path], list[str]], tmp_path: Path
) -> None:
    paths, _ = exports
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    geo $http_x_client $blocklisted {{
        default 0;
        include {paths["nginx"]};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "$blocklisted"; }}
    }}
}}
"""
    )
    run("nginx", "-t", "-c", str(conf), "-p", str(tmp_path))
    probes = {
        "10.0.0.1": "1",
        "10.0.0.127": "1",
        "10.0.0.128": "0",  # the allow
        "10.0.0.255": "0",
        "10.0.1.0": "1",
        "203.0.113.77": "1",  # the manual block
        "198.51.100.7": "1",
        "198.51.100.8": "0",
    }
    with (tmp_path / "nginx.out").open("wb") as out:
        proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stdout=out, stderr=out)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(200):
                    try:
                        client.get("/")
                        break
                    except httpx.TransportError:
                        assert proc.poll() is None, (tmp_path / "nginx.out").read_text()
                        time.sleep(0.05)
                answers = {ip: client.get("/", headers={"x-client": ip}).text for ip in probes}
        finally:
            stop_process(proc)
    assert answers == probes


def test_haproxy_accepts_the_acl_file(exports: tuple[dict[str, Path], list[str]], tmp_path: Path) -> None:
    paths, _ = exports
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(
        f"""
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend web
    bind 127.0.0.1:{free_port()}
    acl blocked src -f {paths["haproxy"]}
    http-request deny if blocked
    http-request return status 200
"""
    )
    checked = run("haproxy", "-c", "-f", str(conf))
    assert "Configuration file is valid" in checked.stdout + checked.stderr


def test_nftables_loads_two_interval_sets_that_hold_exactly_the_export(
    exports: tuple[dict[str, Path], list[str]],
) -> None:
    paths, lines = exports
    with namespace() as ns:
        run("ip", "netns", "exec", ns, "nft", "-c", "-f", str(paths["nftables"]))
        for _ in range(2):  # the second load replaces the first atomically
            run("ip", "netns", "exec", ns, "nft", "-f", str(paths["nftables"]))
        held: set[Net] = set()
        for name in ("v4", "v6"):
            listing = json.loads(
                run("ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "blocklist", name).stdout
            )
            (entry,) = [item["set"] for item in listing["nftables"] if "set" in item]
            for element in entry.get("elem", []):
                if isinstance(element, str):
                    held.add(ipaddress.ip_network(element))
                elif "prefix" in element:
                    held.add(ipaddress.ip_network(f"{element['prefix']['addr']}/{element['prefix']['len']}"))
                else:  # a range nft did not fold into a prefix
                    first, last = element["range"]
                    held.update(
                        ipaddress.summarize_address_range(
                            ipaddress.ip_address(first), ipaddress.ip_address(last)
                        )
                    )
    assert set(ipaddress.collapse_addresses(n for n in held if n.version == 4)) | set(
        ipaddress.collapse_addresses(n for n in held if n.version == 6)
    ) == expected_spans(lines)


def test_ipset_restores_and_swaps_sets_that_hold_exactly_the_export(
    exports: tuple[dict[str, Path], list[str]],
) -> None:
    paths, lines = exports
    script = paths["ipset"].read_text()
    with namespace() as ns:
        for _ in range(2):  # the second restore swaps over the sets of the first
            run("ip", "netns", "exec", ns, "ipset", "restore", input=script)
        saved = run("ip", "netns", "exec", ns, "ipset", "save").stdout
        run("ip", "netns", "exec", ns, "ipset", "destroy")
    names = {line.split()[1] for line in saved.splitlines() if line.startswith("create ")}
    assert names == {"blocklist-v4", "blocklist-v6"}
    held = {ipaddress.ip_network(line.split()[2]) for line in saved.splitlines() if line.startswith("add ")}
    assert held == expected_spans(lines)
