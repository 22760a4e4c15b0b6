"""Hostile path values against the real server over raw TCP: every one gets
422 with a JSON reason, none a 5xx, and the log stays one JSON object per
line (no log injection through the path)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.apiprocess import server, wait_ready

pytestmark = pytest.mark.integration

_BASE = [
    "", " ", "  1.2.3.4", "1.2.3.4 ", "1.2.3.4\t", "\n", "1.2.3.4\r\nX-Injected: 1", "1.2.3.4\nfake log line",
    "\x00", "1.2.3.4\x00", "\x1b[31mred", "..", "../", "../../etc/passwd", "./1.2.3.4", "1.2.3.4/..",
    "1.2.3", "1.2.3.4.5", "1.2.3.", ".1.2.3", "1..2.3", "256.0.0.1", "1.2.3.256", "999.999.999.999",
    "-1.2.3.4", "010.0.0.1", "01.2.3.4", "1.2.3.04", "0x7f.1", "0x7f000001", "0177.0.0.1", "2130706433", "0",
    "1e3.1.1.1", "1.2.3.4a", "a1.2.3.4", "localhost", "example.com", "::ffff:999.1.1.1", "::ffff:1.2.3",
    "fe80::1%eth0", "fe80::1%25eth0", "[::1]", "[2001:db8::1]", "[::1]:80", "1.2.3.4:80", "2001:db8:::1",
    "2001:db8::1::1", "12345::", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::1", "2001:db8::/32",
    "1.2.3.0/24", "1.2.3.4/32", "1.2.3.4-1.2.3.5", "1.2.3.4,5.6.7.8", "1.2.3.4;5.6.7.8", "1.2.3.4 5.6.7.8",
    "%", "%00", "%2e%2e", "%zz", "\u0661.\u0662.\u0663.\u0664", "\uff11.\uff12.\uff13.\uff14", "1.2.3.\uff14",
    "\U0001d7cf.2.3.4", "1\u30022\u30023\u30024", "\u00e9", "\u2603", "\u202e1.2.3.4", "\ufeff1.2.3.4",
    "1.2.3.4\u200b", "null", "None", "undefined", "true", "{}", "[]", '{"ip": "1.2.3.4"}', "<script>",
    "' OR 1=1 --", "$(reboot)", "`id`", "${jndi:ldap://x/a}", "%s%s%s%n", "\\\\", "1.2.3.4\\", "*", "?",
]  # fmt: skip


def hostile_values() -> list[str]:
    """At least 200 values: the hand-written list plus generated variants."""
    values = list(_BASE)
    values += ["1" * n for n in (46, 100, 1000, 8000)]
    values += ["1.2.3.4" + " " * n for n in (1, 2, 50)]
    values += [f"1.2.3.{n}" for n in (256, 300, 1000, 65536, 4294967296)]
    values += [f"{n}.0.0.1" for n in (256, 999, -1)]
    values += [f"::ffff:{a}" for a in ("256.1.1.1", "1.2.3.4.5", "01.2.3.4", "0x1.2.3.4")]
    values += [f"1.2.3.4{c}" for c in "!\"$&'()*+,;=:@[]^`{|}~<>"]
    values += [f"{c}1.2.3.4" for c in "!\"$&'()*+,;=@[]^`{|}~<>"]
    values += [f"1.2.3.4{chr(c)}" for c in range(1, 32)]
    values += [f"2001:db8::{g}" for g in ("10000", "fffff", "xyz", "1:2:3:4:5:6:7")]
    values += ["::" + ":".join(["1"] * n) for n in (8, 9, 20)]
    values += ["a" * 45 + ".b", "1." * 30 + "1"]
    values += [".".join(["1", "2", "3", bad]) for bad in ("", " ", "+4", "4.0", "0004", "4e0", "IV", "0b100")]
    # Encodings of a slash and of a dot-dot, as a client may send them.
    values += ["1.2.3.4/", "/1.2.3.4", "1.2.3.4//", "1.2.3.4/%2e%2e"]
    unique = list(dict.fromkeys(values))
    assert len(unique) >= 200, len(unique)
    return unique


HOSTILE = hostile_values()


def request(sock_file: socket.socket, target: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a keep-alive socket; (status, headers, body)."""
    sock_file.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode("ascii"))
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock_file.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock_file.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("hostile")
    feed = tmp / "feed.txt"
    feed.write_text("1.2.3.4\n2001:db8::/32\n")
    env = {
        "BLOCKLIST_FEEDS": f"f=plain:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp / "state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_ACCESS_LOG": "true",
    }
    log = tmp / "server.log"
    with server(env, log) as (base, proc):
        wait_ready(base, proc)
        yield base, log


def test_every_hostile_value_gets_422_with_a_json_reason(api: tuple[str, Path]) -> None:
    base, log = api
    host, port = base.removeprefix("http://").split(":")
    failures = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for value in HOSTILE:
            # Percent-encoded as a client library would send it; the server
            # decodes the path before the application sees it.
            status, headers, body = request(sock, "/check_ip/" + quote(value, safe="/"))
            try:
                assert status == 422
                assert headers["content-type"] == "application/json"
                payload = json.loads(body)
                assert payload["error"] == "invalid_address"
                assert payload["detail"]
                assert value not in payload["detail"] or len(value) < 2  # reasons never echo input
            except (AssertionError, KeyError, ValueError) as exc:
                failures.append((value, status, body[:100], repr(exc)))
    assert not failures, failures[:10]

    # One JSON object per line: nothing a client sent split or forged a line.
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert len(access) >= len(HOSTILE)
    assert not [r for r in records if r["level"] in ("error", "critical")]
    assert not any("fake log line" in line and "uvicorn.access" not in line for line in lines)


@pytest.mark.parametrize(
    "raw", [b"/check_ip/\xff", b"/check_ip/\xc3\xa9", b"/check_ip/\t1.2.3.4", b"/check_ip/\x7f"]
)
def test_bytes_that_are_not_http_get_400_from_the_server_never_5xx(api: tuple[str, Path], raw: bytes) -> None:
    """Unencoded non-ASCII or control bytes in the request line are not HTTP:
    the server's parser refuses them with 400 before the application."""
    base, _ = api
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
