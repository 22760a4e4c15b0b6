"""The Dockerfile, requirements.lock, scripts/lock and .dockerignore, checked
statically (no Docker engine here): lint, stages, user, probe, entry point,
and a lock that really pins what pyproject.toml asks for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import API_PORT, ROOT, app_paths, known_env_names

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
BIN = Path(sys.executable).parent


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling continuation line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and word == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            assert stages, f"{word} before FROM"
            stages[-1].instructions.append((word, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    # An unpinned pip install and a missing USER must fail, or the test above
    # proves nothing.
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "-"],
        input="FROM python:3.11.13-slim-bookworm\nRUN pip install requests\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3013" in result.stdout


def test_multi_stage_build_on_one_pinned_slim_base(stages: list[Stage]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base, "the venv links to the base's interpreter"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", builder.base), builder.base


def test_final_stage_copies_only_the_venv(final: Stage) -> None:
    copies = final.args("COPY") + final.args("ADD")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(final.args("RUN"))
    for tool in ("pip install", "apt-get", "gcc", "build-essential", "curl", "wget"):
        assert tool not in runs, tool
    env = " ".join(final.args("ENV"))
    assert re.search(r"PATH=\"?/opt/venv/bin:", env)


def test_final_stage_runs_as_a_fixed_non_root_user(final: Stage) -> None:
    users = final.args("USER")
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    runs = " ".join(final.args("RUN"))
    assert f"--uid {uid}" in runs
    # useradd with a high UID and no --no-log-init writes a huge sparse lastlog.
    assert "--no-log-init" in runs
    # The state directory exists and belongs to that user.
    state_dir = re.search(r"BLOCKLIST_STATE_DIR=(\S+)", " ".join(final.args("ENV")))
    assert state_dir
    assert re.search(rf"install -d -o {uid} -g {gid or uid} .*{re.escape(state_dir[1])}", runs)
    # USER comes after everything that needs root.
    words = [word for word, _ in final.instructions]
    assert max(i for i, w in enumerate(words) if w in ("RUN", "COPY")) < words.index("USER")


def test_environment(final: Stage) -> None:
    env = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", " ".join(final.args("ENV"))))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["BLOCKLIST_STATE_DIR"] == "/var/lib/blocklist"
    settings = {k for k in env if k.startswith("BLOCKLIST_")}
    assert settings <= known_env_names()


def test_healthcheck_calls_an_api_route_with_urllib(final: Stage) -> None:
    checks = final.args("HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"], "slim has no curl: Python's urllib"
    assert "urllib.request" in argv[2]
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[^'\"\s]*)", argv[2])
    assert len(urls) == 1
    port, path = urls[0]
    assert int(port) == API_PORT
    assert path in app_paths()
    assert path == "/healthz", "liveness, not readiness: a restart does not bring data back"


def test_entry_point_port_and_stop_signal(final: Stage) -> None:
    assert final.args("CMD") == [
        json.dumps(["python", "-m", "ipchecking", "--host", "0.0.0.0", "--port", str(API_PORT)])
    ]
    assert final.args("EXPOSE") == [str(API_PORT)]
    assert final.args("STOPSIGNAL") == ["SIGTERM"]
    assert not final.args("ENTRYPOINT"), "compose runs the updater as `python -m blocklistupdater`"


def test_builder_installs_the_lock_then_the_project(stages: list[Stage]) -> None:
    builder = stages[0]
    assert "requirements.lock ./" in builder.args("COPY")
    runs = builder.args("RUN")
    lock_install = [r for r in runs if re.search(r"(--requirement|-r) requirements\.lock\b", r)]
    assert len(lock_install) == 1
    assert "--no-deps" in lock_install[0], "the lock is the whole closure"
    assert "--only-binary=:all:" in lock_install[0], "no compiler needed"
    project = [r for r in runs if re.search(r"install [^&]*--no-deps \.(\s|$)", r)]
    assert len(project) == 1, "the project, non-editable, without dependencies"
    assert " -e " not in project[0]
    assert "--editable" not in project[0]
    assert "pip --python /opt/venv/bin/python check" in project[0]


def test_copy_sources_exist(stages: list[Stage]) -> None:
    for stage in stages:
        for rest in stage.args("COPY"):
            if rest.startswith("--from"):
                continue
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line.strip())
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match[2]
    return pins


def project_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["project"]["dependencies"]]


def test_lock_pins_every_runtime_dependency() -> None:
    pins = lock_pins()
    assert "blocklist-service" not in pins, "the project is installed from source, not the lock"
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} does not satisfy {req.specifier}: run scripts/lock"
        )


def test_lock_holds_the_extras_and_their_closure() -> None:
    # uvicorn[standard] and redis[hiredis] need packages pyproject never
    # names. Walk the dependency metadata of the installed distributions,
    # following only those installed at the locked version (their metadata is
    # then the locked one), with markers for this platform: Linux, 3.11.
    pins = lock_pins()
    assert {"hiredis", "uvloop", "httptools"} <= set(pins)
    seen: set[str] = set()
    todo = [(req, frozenset(req.extras)) for req in project_requirements()]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} (needed via {req}) is not in requirements.lock"
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if canonicalize_name(dist.version) != canonicalize_name(pins[name]):
            continue
        for text in dist.requires or []:
            child = Requirement(text)
            wanted = child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                todo.append((child, frozenset(child.extras)))
    # Not vacuous: at least one locked package's own dependencies were followed.
    assert len(seen) > len(project_requirements())


def test_lock_is_generated_by_the_lock_script() -> None:
    header = LOCK.read_text().splitlines()[:3]
    assert any("scripts/lock" in line for line in header)
    script = ROOT / "scripts" / "lock"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text
    assert "pip freeze --exclude blocklist-service" in text
    result = subprocess.run(
        [str(BIN / "shellcheck"), str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**`` any depth, ``*`` and ``?`` within one name."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last
    matching pattern wins, and a pattern matching a directory covers all
    under it."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in patterns:
        negate = line.startswith("!")
        regex = _pattern_regex(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_build_inputs_only() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv", ".venv/bin/python", ".git", ".git/HEAD", "tests/deploy/support.py", "k8s"):
        assert dockerignore_excludes(patterns, path), path
    for path in ("blocklist/__pycache__/x.pyc", "ipchecking/app.pyc", "bench/README.md", "docs.md"):
        assert dockerignore_excludes(patterns, path), path
    snapshots = [str(p.relative_to(ROOT)) for p in (ROOT / "blocklist" / "data").glob("*.gz")]
    assert snapshots, "the bundled snapshot is package data"
    needed = [
        *snapshots,
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "blocklist/settings.py",
        "blocklistupdater/worker.py",
        "ipchecking/app.py",
    ]
    for path in needed:
        assert not dockerignore_excludes(patterns, path), path
