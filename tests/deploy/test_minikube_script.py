"""``setup_minikube.sh``: lint, the commands it runs, and its behaviour with
stub ``minikube``, ``kubectl``, ``docker`` and ``curl`` on a private PATH (no
cluster, no network)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import ROOT

SCRIPT = ROOT / "setup_minikube.sh"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
TOOLS = {"minikube", "kubectl", "docker", "curl"}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


BASH_BUILTINS = _words(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare "
    "dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill "
    "let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt "
    "source suspend test times trap true type typeset ulimit umask unalias unset wait"
)
#: GNU coreutils' programs.
COREUTILS = _words(
    "[ arch b2sum base32 base64 basename basenc cat chcon chgrp chmod chown chroot cksum comm cp "
    "csplit cut date dd df dir dircolors dirname du echo env expand expr factor false fmt fold groups "
    "head hostid id install join link ln logname ls md5sum mkdir mkfifo mknod mktemp mv nice nl nohup "
    "nproc numfmt od paste pathchk pinky pr printenv printf ptx pwd readlink realpath rm rmdir runcon "
    "seq sha1sum sha224sum sha256sum sha384sum sha512sum shred shuf sleep sort split stat stdbuf stty "
    "sum sync tac tail tee test timeout touch tr true truncate tsort tty uname unexpand uniq unlink "
    "users vdir wc who whoami yes"
)


# --- a small scanner for the commands a bash script runs ---------------------
#
# Enough bash for this script's style: words with quotes and escapes, $(...)
# (scanned recursively, also inside double quotes), ${...}, redirections,
# operators, comments, if/while/until/for, case with patterns, [[ ... ]],
# and function definitions "name() {". Here-documents, backquotes and
# (( ... )) raise instead of being misread.

_REDIRECT = re.compile(r"\d*(?:>>|>&|<&|&>|>|<)")
_OPERATORS = ("&&", "||", ";;", ";", "&", "|", "(", ")", "\n")
_WORD_END = " \t\n;&|()<>"
_BEFORE_COMMAND = {"if", "then", "else", "elif", "do", "while", "until", "!", "{"}
_CLOSERS = {"fi", "done", "}", "esac"}


class Unsupported(ValueError):
    """Bash this scanner does not understand."""


def _close_paren(src: str, i: int) -> int:
    """Index of the ``)`` closing a ``$(`` whose contents start at ``i``."""
    depth = 1
    while i < len(src):
        ch = src[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            i = src.index("'", i + 1)
        elif ch == '"':
            i = _skip_double_quoted(src, i + 1)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Unsupported("unclosed $(")


def _skip_double_quoted(src: str, i: int) -> int:
    """Index of the ``"`` closing a string whose contents start at ``i``."""
    while src[i] != '"':
        if src[i] == "\\":
            i += 2
        elif src.startswith("$(", i):
            i = _close_paren(src, i + 2) + 1
        else:
            i += 1
    return i


def _tokens(src: str, found: set[str], functions: set[str]) -> list[tuple[str, str]]:
    """("word" | "op" | "redirect", text) tokens; commands inside $(...) go to ``found``."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch in " \t" or src.startswith("\\\n", i):
            i += 1 if ch in " \t" else 2
            continue
        if ch == "#":
            i = src.find("\n", i) if "\n" in src[i:] else len(src)
            continue
        if src.startswith("<<", i) or ch == "`" or src.startswith("((", i):
            raise Unsupported(f"here-document, backquote or (( )) at {src[i : i + 20]!r}")
        redirect = _REDIRECT.match(src, i)
        if redirect:
            out.append(("redirect", redirect.group()))
            i = redirect.end()
            continue
        op = next((o for o in _OPERATORS if src.startswith(o, i)), None)
        if op:
            out.append(("op", op))
            i += len(op)
            continue
        text: list[str] = []
        while i < len(src) and src[i] not in _WORD_END:
            if src[i] == "\\":
                text.append(src[i + 1 : i + 2])
                i += 2
            elif src[i] == "'":
                end = src.index("'", i + 1)
                text.append(src[i + 1 : end])
                i = end + 1
            elif src[i] == '"':
                end = _skip_double_quoted(src, i + 1)
                inner = src[i + 1 : end]
                for match in re.finditer(r"\$\(", inner):
                    close = _close_paren(inner, match.end())
                    _scan(inner[match.end() : close], found, functions)
                text.append(inner)
                i = end + 1
            elif src.startswith("$((", i):
                raise Unsupported("$(( )) arithmetic")
            elif src.startswith("$(", i):
                close = _close_paren(src, i + 2)
                _scan(src[i + 2 : close], found, functions)
                text.append(src[i : close + 1])
                i = close + 1
            elif src.startswith("${", i):
                end = src.index("}", i)
                text.append(src[i : end + 1])
                i = end + 1
            else:
                text.append(src[i])
                i += 1
        out.append(("word", "".join(text)))
    return out


def _scan(src: str, found: set[str], functions: set[str]) -> None:
    tokens = _tokens(src, found, functions)
    command_next = True
    in_case = False  # inside case ... esac
    pattern = False  # reading case patterns, up to ")"
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        i += 1
        if kind == "redirect":
            i += 1  # its target
            continue
        if kind == "op":
            if pattern and text == ")":
                pattern, command_next = False, True
            elif text == ";;":
                pattern = True
            elif not pattern:
                command_next = True
            continue
        if pattern:
            if text == "esac":
                in_case = pattern = command_next = False
            continue
        if not command_next:
            continue
        if text in _BEFORE_COMMAND:
            continue
        if text in _CLOSERS:
            in_case = in_case and text != "esac"
            command_next = False
        elif text == "case":
            if in_case:
                raise Unsupported("nested case")
            while tokens[i] != ("word", "in"):
                i += 1
            in_case = pattern = True
            i += 1
        elif text == "[[":
            while tokens[i] != ("word", "]]"):
                i += 1
            i += 1
            command_next = False
        elif text == "for":
            while tokens[i] not in (("op", ";"), ("op", "\n")):
                i += 1
        elif re.fullmatch(r"[A-Za-z_]\w*=.*", text, re.DOTALL):
            continue  # an assignment before (or instead of) a command
        elif tokens[i : i + 2] == [("op", "("), ("op", ")")]:
            functions.add(text)
            i += 2
        else:
            found.add(text)
            command_next = False


def commands_used(script: str) -> tuple[set[str], set[str]]:
    """(names run as commands, functions defined) in a bash script."""
    found: set[str] = set()
    functions: set[str] = set()
    _scan(script, found, functions)
    return found, functions


def checked_tools(script: str) -> set[str]:
    """Tools the script verifies with its ``require TOOL...`` calls."""
    return {tool for line in re.findall(r"^\s*require\s+(.+)$", script, re.M) for tool in line.split()}


# --- static checks -----------------------------------------------------------


def test_scanner_finds_commands_in_every_position() -> None:
    sample = (
        "#!/usr/bin/env bash\n"
        "f() { g 2>&1 | head -n1; }  # tail\n"
        'x="$(basename "$(dirname "$0")")" && ! grep -q y z || true\n'
        'case "$1" in\n  a | b) sort ;;\n  *) cut -d, -f1 ;;\nesac\n'
        'if [[ -n "$x" ]]; then\n  VAR=1 uniq >/dev/null\nfi\n'
        "for i in 1 2; do wc -l; done &\n"
    )
    found, functions = commands_used(sample)
    assert functions == {"f"}
    assert found == {"g", "head", "basename", "dirname", "grep", "true", "sort", "cut", "uniq", "wc"}
    with pytest.raises(Unsupported):
        commands_used("cat <<EOF\nrm -rf /\nEOF\n")


def test_script_passes_shellcheck() -> None:
    result = subprocess.run(
        [str(SHELLCHECK), str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_is_executable_bash_in_strict_mode() -> None:
    assert SCRIPT.stat().st_mode & stat.S_IXUSR
    lines = SCRIPT.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    code = [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "set -euo pipefail"


def test_script_runs_only_builtins_coreutils_and_the_tools_it_checks() -> None:
    script = SCRIPT.read_text()
    found, functions = commands_used(script)
    assert checked_tools(script) == TOOLS
    assert found >= TOOLS, "every checked tool is used"
    outside = found - BASH_BUILTINS - COREUTILS - functions - TOOLS
    assert not outside, f"not checked for and not coreutils: {sorted(outside)}"


# --- behaviour with stub tools -----------------------------------------------

STUB = """#!/bin/sh
printf '%s\\n' "{tool} $*" >>"$STUB_DIR/calls.log"
{body}
"""
STUB_BODIES = {
    "minikube": """case "$1" in
    status) exit "${STUB_MINIKUBE_STATUS:-0}" ;;
esac""",
    "kubectl": """case "$*" in
    *" port-forward "*)
        echo $$ >"$STUB_DIR/port-forward.tmp"
        mv "$STUB_DIR/port-forward.tmp" "$STUB_DIR/port-forward.pid"
        exec sleep 30 ;;
    *" apply "*) : >"$STUB_DIR/applied" ;;
    *" get statefulset -o name"*)
        printf 'statefulset.apps/redis-primary\\nstatefulset.apps/redis-replica\\n' ;;
    *" get deployment -o name"*)
        if [ -e "$STUB_DIR/applied" ] || [ -n "${STUB_EXISTING:-}" ]; then
            printf 'deployment.apps/api\\ndeployment.apps/updater\\n'
        fi ;;
esac""",
    "docker": """if [ -n "${STUB_DOCKER_DOWN:-}" ]; then exit 1; fi""",
    # Like the real one, answers once the port-forward is up.
    "curl": """i=0
while [ ! -e "$STUB_DIR/port-forward.pid" ] && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
if [ -n "${STUB_CURL_FAIL:-}" ]; then exit 22; fi
printf '{"blocked": false}'""",
}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of the script in a fake checkout, and a bin directory holding
    bash and the coreutils the script and the stubs use (the stubs are added
    by :func:`add_stubs`)."""
    repo = tmp_path / "repo"
    (repo / "k8s" / "overlays" / "minikube").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM scratch\n")
    shutil.copy2(SCRIPT, repo / SCRIPT.name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    found, _ = commands_used(SCRIPT.read_text())
    for name in {"bash", "sleep", "mv"} | (found & COREUTILS - BASH_BUILTINS):
        path = shutil.which(name)
        assert path, f"{name} not found on this machine"
        (bin_dir / name).symlink_to(path)
    return tmp_path


def add_stubs(sandbox: Path, tools: set[str]) -> None:
    for tool in tools:
        stub = sandbox / "bin" / tool
        stub.write_text(STUB.format(tool=tool, body=STUB_BODIES[tool]))
        stub.chmod(0o755)


def run_script(sandbox: Path, *args: str, **env: str) -> Run:
    stub_dir = sandbox / "state"
    stub_dir.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(sandbox / "repo" / SCRIPT.name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": str(sandbox / "bin"), "HOME": str(sandbox), "STUB_DIR": str(stub_dir), **env},
    )
    log = stub_dir / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return Run(result.returncode, result.stdout, result.stderr, calls)


def assert_port_forward_stopped(sandbox: Path) -> None:
    pid = int((sandbox / "state" / "port-forward.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # our own stub: do not leave it behind
    pytest.fail("the port-forward outlived the script")


def test_fresh_deploy_starts_builds_applies_waits_and_smoke_tests(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, STUB_MINIKUBE_STATUS="7")
    assert run.returncode == 0, run.stderr
    ctx = "kubectl --context blocklist"
    expected = [
        "minikube status -p blocklist",
        "docker info",
        "minikube start -p blocklist --driver=docker --cpus=2 --memory=4096",
        "minikube -p blocklist addons enable metrics-server",
        "minikube -p blocklist image build -t blocklist-service:0.1.0 .",
        f"{ctx} -n blocklist get deployment -o name",
        f"{ctx} apply -k k8s/overlays/minikube",
        f"{ctx} -n blocklist get statefulset -o name",
        f"{ctx} -n blocklist rollout status statefulset.apps/redis-primary --timeout=300s",
        f"{ctx} -n blocklist rollout status statefulset.apps/redis-replica --timeout=300s",
        f"{ctx} -n blocklist get deployment -o name",
        f"{ctx} -n blocklist rollout status deployment.apps/api --timeout=300s",
        f"{ctx} -n blocklist rollout status deployment.apps/updater --timeout=300s",
    ]
    assert run.calls[: len(expected)] == expected
    # Then, concurrently: the port-forward in the background, and curl.
    curl, forward = sorted(run.calls[len(expected) :])
    assert forward == f"{ctx} -n blocklist port-forward svc/api 18000:80"
    assert curl.startswith("curl ")
    assert curl.endswith(" http://127.0.0.1:18000/check_ip/1.2.3.4")
    assert '{"blocked": false}' in run.stdout
    assert "port-forward svc/api 8000:80" in run.stdout
    assert "minikube -p blocklist service api -n blocklist --url" in run.stdout
    assert_port_forward_stopped(sandbox)


def test_rerun_reuses_the_cluster_and_restarts_onto_the_new_image(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, STUB_EXISTING="1", SMOKE_PORT="18123")
    assert run.returncode == 0, run.stderr
    assert not [c for c in run.calls if c.startswith("minikube start")]
    # The reused profile's kube context is recreated before kubectl needs it.
    first_kubectl = next(i for i, c in enumerate(run.calls) if c.startswith("kubectl "))
    assert "minikube -p blocklist update-context" in run.calls[:first_kubectl]
    restart = "kubectl --context blocklist -n blocklist rollout restart deployment"
    assert run.calls.index(restart) > run.calls.index(
        "kubectl --context blocklist apply -k k8s/overlays/minikube"
    )
    assert [c for c in run.calls if c.endswith(" http://127.0.0.1:18123/check_ip/1.2.3.4")]
    assert_port_forward_stopped(sandbox)


def test_failed_smoke_test_fails_the_script_and_stops_the_port_forward(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, STUB_CURL_FAIL="1")
    assert run.returncode != 0
    assert "smoke test failed" in run.stderr
    assert_port_forward_stopped(sandbox)


def test_stopped_docker_daemon_is_reported_before_starting_minikube(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, STUB_MINIKUBE_STATUS="7", STUB_DOCKER_DOWN="1")
    assert run.returncode != 0
    assert "Docker daemon is not running" in run.stderr
    assert run.calls == ["minikube status -p blocklist", "docker info"]


def test_delete_removes_the_namespace_and_the_profile(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, "--delete")
    assert run.returncode == 0, run.stderr
    assert run.calls == [
        "minikube status -p blocklist",
        "minikube -p blocklist update-context",
        "kubectl --context blocklist delete namespace blocklist --ignore-not-found --timeout=180s",
        "minikube delete -p blocklist",
    ]


def test_missing_tools_are_named_with_install_hints_before_anything_runs(sandbox: Path) -> None:
    add_stubs(sandbox, {"kubectl", "curl"})
    run = run_script(sandbox)
    assert run.returncode != 0
    assert run.calls == []
    for tool in ("minikube", "docker"):
        assert re.search(rf"missing: {tool}; install: https://", run.stderr), run.stderr
    assert "missing: kubectl" not in run.stderr


def test_unknown_argument_prints_usage(sandbox: Path) -> None:
    add_stubs(sandbox, TOOLS)
    run = run_script(sandbox, "--bogus")
    assert run.returncode == 2
    assert "--delete" in run.stderr
    assert run.calls == []
