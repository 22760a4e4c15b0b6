"""docker-compose.yml and the files it mounts, checked statically.

No Docker engine runs here, so these tests hold the compose file to what the
code and the other deployment files say: the compose schema, the settings
the code reads, the routes the API serves, the ports it and the updater
listen on, and the metric names the code exports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocklist.errors import ConfigError
from blocklist.settings import load_settings
from tests.deploy.support import API_PORT, ROOT, app_paths, known_env_names

COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
#: Services that run the project's image.
OURS = ("api", "updater")
#: uvicorn's default keep-alive (``timeout_keep_alive``), which the API keeps.
UVICORN_KEEP_ALIVE_SECONDS = 5
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def defaults(value: object) -> str:
    """``value`` as compose interpolates it with no variable set in the shell.

    ``${NAME:-default}`` and ``${NAME-default}`` give their default, ``$$``
    is a literal ``$``; a bare ``${NAME}`` would be empty, which these files
    never rely on, so it fails the test.
    """
    text = str(value)

    def repl(match: re.Match[str]) -> str:
        if match["op"] is None:
            pytest.fail(f"{text!r}: ${{{match['name']}}} without a default")
        return match["default"]

    parts = text.split("$$")
    return "$".join(_VAR.sub(repl, part) for part in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of environment (merged from x- anchors)"
    return {str(k): defaults(v) for k, v in env.items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def sentinel_conf(service: dict[str, Any]) -> dict[str, str]:
    """The sentinel.conf a sentinel service writes: directive -> rest of line."""
    script = defaults(service["command"][-1])
    body = script.split("<<EOF", 1)[1].split("\nEOF", 1)[0]
    env = env_of(service)
    conf: dict[str, str] = {}
    for raw in body.strip().splitlines():
        words = re.sub(r"\$(\w+)", lambda m: env[m[1]], raw.strip()).split()
        key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
        conf[key] = " ".join(words[2:] if words[0] == "sentinel" else words[1:])
    return conf


def test_compose_validates_against_the_compose_schema() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    # The check above is worth something only if the schema refuses keys it
    # does not know, as compose itself does.
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    healthcheck:\n", "    helthcheck:\n", 1))
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


def test_compose_spec_has_no_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "redis-primary",
        "redis-replica-1",
        "redis-replica-2",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "updater",
        "api",
        "lb",
        "prometheus",
        "grafana",
    }
    assert set(services) == expected
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]


def test_every_service_has_healthcheck_restart_policy_and_limits(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name}: no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no cpu limit"
        assert re.fullmatch(r"\d+[MG]", str(limits.get("memory", ""))), f"{name}: no memory limit"


def test_every_service_is_hardened(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
    # Ours, the Redis servers and the sentinels run non-root, capability-free,
    # on a read-only root file system.
    for name in (*OURS, "redis-primary", "redis-replica-1", "sentinel-1"):
        assert services[name].get("cap_drop") == ["ALL"], name
        assert services[name].get("read_only") is True, name
    assert services["lb"].get("read_only") is True


def test_depends_on_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    seen = 0
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long form of depends_on, with a condition"
        for dep, spec in deps.items():
            seen += 1
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}"
            assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
            # A service started without the profile must not need one that is in it.
            if not svc.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} -> {dep} (profile-only)"
    assert seen >= 10


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    sentinels = {"sentinel-1", "sentinel-2", "sentinel-3"}
    assert sentinels <= set(services["updater"]["depends_on"])
    assert sentinels <= set(services["api"]["depends_on"])
    assert "api" in services["lb"]["depends_on"]
    # The API must not wait for the updater: it serves what Redis holds.
    assert "updater" not in services["api"]["depends_on"]


def test_our_services_run_our_image(services: dict[str, dict[str, Any]]) -> None:
    api, updater = services["api"], services["updater"]
    assert api["image"] == updater["image"]
    assert api["build"]["context"] == updater["build"]["context"] == "."
    assert (ROOT / "Dockerfile").is_file()
    assert "command" not in api, "the API runs the image's CMD"
    assert updater["command"] == ["python", "-m", "blocklistupdater"]
    assert defaults(api["deploy"]["replicas"]) == "3"


def test_env_names_are_settings_the_code_reads(services: dict[str, dict[str, Any]]) -> None:
    known = known_env_names()
    for name in OURS:
        env = env_of(services[name])
        ours = {k for k in env if k.startswith("BLOCKLIST_") or k == "REDIS_URL"}
        assert ours, name
        assert ours <= known, f"{name}: unknown settings {sorted(ours - known)}"


@pytest.mark.parametrize("name", OURS)
def test_env_defaults_are_valid_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The values compose passes with nothing set in the shell must load:
    # a bad duration or port would stop the container at start.
    for var in list(os.environ):
        if var.startswith("BLOCKLIST_") or var == "REDIS_URL":
            monkeypatch.delenv(var)
    for var, value in env_of(services[name]).items():
        monkeypatch.setenv(var, value)
    try:
        settings = load_settings()
    except ConfigError as exc:
        pytest.fail(f"{name}: {exc}")
    assert not settings.embedded
    assert settings.redis_sentinels
    assert settings.redis_url is None


def test_sentinel_topology_agrees_with_the_app(services: dict[str, dict[str, Any]]) -> None:
    sentinels = [n for n in services if n.startswith("sentinel-")]
    assert len(sentinels) == 3
    for name in OURS:
        env = env_of(services[name])
        listed = [item.rsplit(":", 1) for item in env["BLOCKLIST_REDIS_SENTINELS"].split(",")]
        assert sorted(host for host, _ in listed) == sorted(sentinels), name
        for sentinel in sentinels:
            conf = sentinel_conf(services[sentinel])
            assert {port for _, port in listed} == {conf["port"]}
            service_name, host, port, quorum = conf["sentinel monitor"].split()
            assert env["BLOCKLIST_REDIS_SENTINEL_SERVICE"] == service_name, f"{name} vs {sentinel}"
            assert host == "redis-primary"
            assert port == "6379"
            assert len(sentinels) // 2 < int(quorum) <= len(sentinels)
            assert conf["sentinel announce-ip"] == sentinel, "announce the sentinel's own name"
            assert conf["sentinel resolve-hostnames"] == conf["sentinel announce-hostnames"] == "yes"


def test_redis_replicas_follow_the_primary_and_announce_names(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("redis-primary", "redis-replica-1", "redis-replica-2"):
        args = [defaults(a) for a in services[name]["command"]]
        assert args[0] == "redis-server"
        announce = args[args.index("--replica-announce-ip") + 1]
        assert announce == name, "sentinels hand out this name; it must be the service's"
        assert args[args.index("--appendonly") + 1] == "yes"
        if name != "redis-primary":
            at = args.index("--replicaof")
            assert args[at + 1 : at + 3] == ["redis-primary", "6379"]
    assert any(v.startswith("redis-primary-data:") for v in services["redis-primary"]["volumes"])


def test_sentinel_config_is_written_to_a_writable_volume(services: dict[str, dict[str, Any]]) -> None:
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        svc = services[name]
        script = defaults(svc["command"][-1])
        path = re.search(r"conf=(\S+)", script)
        assert path, name
        directory = str(Path(path[1]).parent)
        assert directory in svc["volumes"] or any(v.endswith(":" + directory) for v in svc["volumes"])
        assert 'exec redis-server "$conf" --sentinel' in script
        assert "redis-cli -p 26379 ping" in healthcheck_text(svc)


def test_updater_state_dir_is_a_volume(services: dict[str, dict[str, Any]]) -> None:
    # The root file system is read-only; the updater writes feeds and
    # versions to BLOCKLIST_STATE_DIR, as the image sets it.
    state_dir = re.search(r"BLOCKLIST_STATE_DIR=(\S+)", (ROOT / "Dockerfile").read_text())
    assert state_dir
    mounts = [v.split(":")[1] for v in services["updater"]["volumes"]]
    assert state_dir[1] in mounts
    assert "BLOCKLIST_STATE_DIR" not in env_of(services["updater"])


def test_updater_healthcheck_probes_its_heartbeat(services: dict[str, dict[str, Any]]) -> None:
    # Without its own check the updater would inherit the image's, which
    # asks for the API's /healthz on a port the updater never opens.
    assert services["updater"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "blocklistupdater",
        "--check",
    ]
    env = env_of(services["updater"])
    assert "BLOCKLIST_WORKER_ID" not in env, "default (host name) keeps scaled updaters apart"


def healthcheck_urls(service: dict[str, Any]) -> list[tuple[int, str]]:
    """(port, path) of every local URL a service's healthcheck fetches."""
    found = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)", healthcheck_text(service))
    return [(int(port), path) for port, path in found]


def test_healthcheck_urls_point_at_api_routes(services: dict[str, dict[str, Any]]) -> None:
    paths = app_paths()
    for name in ("api", "lb"):
        urls = healthcheck_urls(services[name])
        assert urls, f"{name}: healthcheck has no URL"
        for port, path in urls:
            assert port == API_PORT, name
            assert path in paths, f"{name}: {path} is not an API route"


def test_api_healthcheck_is_readiness(services: dict[str, dict[str, Any]]) -> None:
    # `lb` and `docker compose up --wait` go ahead once the API is healthy:
    # /healthz is 200 while it still answers 503 no_data; /readyz is not.
    # (The image's own HEALTHCHECK stays on /healthz: see test_image.py.)
    assert healthcheck_urls(services["api"]) == [(API_PORT, "/readyz")]
    assert "/readyz" in app_paths()
    assert services["lb"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_lb_publishes_the_api_port(services: dict[str, dict[str, Any]]) -> None:
    lb = services["lb"]
    published = [
        (defaults(p.get("published")), p.get("target"))
        for p in lb["ports"]
        if isinstance(p, dict) and p.get("protocol", "tcp") == "tcp"
    ]
    assert ("8000", API_PORT) in published
    for name in ("api", "updater"):
        assert "ports" not in services[name], f"{name} is reached through the network, not the host"


def test_nginx_balances_over_every_api_replica(services: dict[str, dict[str, Any]]) -> None:
    conf_mounts = [v for v in services["lb"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
    assert conf_mounts
    conf = (ROOT / conf_mounts[0].split(":")[0]).read_text()
    code = "\n".join(line.split("#")[0] for line in conf.splitlines())
    assert re.search(r"resolver\s+127\.0\.0\.11\s[^;]*valid=10s", code)
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", code)
    assert upstream
    assert re.search(rf"server\s+api:{API_PORT}\s[^;]*\bresolve\b", upstream[2]), "re-resolve `api`"
    assert re.search(r"\bzone\s+\w+", upstream[2]), "resolve needs a shared zone"
    assert re.search(r"\bkeepalive\s+\d+", upstream[2])
    # Idle upstream connections must close on nginx's side first: uvicorn
    # (ipchecking/__main__.py leaves timeout_keep_alive at its default)
    # closes them after 5 s, and a reused, just-closed one is a 502.
    idle = re.search(r"\bkeepalive_timeout\s+(\d+)s;", upstream[2])
    assert idle, "set the upstream keepalive_timeout (nginx's default, 60s, outlives uvicorn's)"
    assert int(idle[1]) < UVICORN_KEEP_ALIVE_SECONDS
    assert re.search(rf"proxy_pass\s+http://{upstream[1]};", code)
    assert re.search(rf"listen\s+{API_PORT};", code)
    assert "proxy_http_version 1.1;" in code
    assert 'proxy_set_header Connection "";' in code


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    count = 0
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                count += 1
                assert (ROOT / source).exists(), f"{name}: {source} missing"
    assert count >= 4


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    used = {
        v.split(":")[0]
        for svc in services.values()
        for v in svc.get("volumes", [])
        if ":" in v and not v.startswith(("./", "/"))
    }
    assert used
    assert used <= set(compose.get("volumes", {}))


def test_third_party_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in OURS:
            continue
        image = defaults(svc["image"])
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: {image} has no tag"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
        if name.startswith(("redis", "sentinel")):
            assert tag.startswith("7.")
            assert tag.endswith("-alpine")


# --- monitoring profile ----------------------------------------------------


def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    svc = services["prometheus"]
    config_flag = next(a for a in svc["command"] if a.startswith("--config.file="))
    target = config_flag.split("=", 1)[1]
    source = next(v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == target)
    data = yaml.safe_load((ROOT / source).read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_every_replica_on_the_right_ports(services: dict[str, dict[str, Any]]) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config(services)["scrape_configs"]}
    expected = {
        "api": API_PORT,
        "updater": int(env_of(services["updater"])["BLOCKLIST_METRICS_PORT"]),
    }
    for job_name, port in expected.items():
        sd = jobs[job_name]["dns_sd_configs"]
        assert len(sd) == 1
        assert sd[0]["names"] == [job_name]
        assert job_name in services
        assert sd[0]["type"] == "A"
        assert sd[0]["port"] == port, job_name
        assert jobs[job_name].get("metrics_path", "/metrics") == "/metrics"
    assert "/metrics" in app_paths()
    # Bound on every interface, or no other container reaches it.
    assert env_of(services["updater"])["BLOCKLIST_METRICS_HOST"] == "0.0.0.0"


def exported_metric_names() -> set[str]:
    """Every sample name the code can expose, from the metric definitions."""
    suffixes = {
        "Counter": ("_total",),
        "CounterMetricFamily": ("_total",),
        "Gauge": ("",),
        "GaugeMetricFamily": ("",),
        "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
        "Histogram": ("_bucket", "_sum", "_count"),
    }
    names: set[str] = set()
    for source in ("ipchecking/metrics.py", "blocklistupdater/metrics.py"):
        text = (ROOT / source).read_text()
        for kind, name in re.findall(r"\b(\w+)\(\s*\"(blocklist_[a-z0-9_]+)\"", text):
            assert kind in suffixes, f"{source}: {kind}({name}) not understood by this test"
            names.update(name + suffix for suffix in suffixes[kind])
    return names


def grafana_dashboard(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "blocklist.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    dashboards = ROOT / mounts[path]
    files = sorted(dashboards.glob("*.json"))
    assert [f.name for f in files] == ["blocklist.json"]
    data = json.loads(files[0].read_text())
    assert isinstance(data, dict)
    return data


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_dashboard_metrics_are_exported_by_the_code(services: dict[str, dict[str, Any]]) -> None:
    exported = exported_metric_names()
    # Spot checks of the suffix rules: a counter is only seen with _total.
    assert {"blocklist_http_requests_total", "blocklist_feed_syncs_total"} <= exported
    assert "blocklist_feed_syncs" not in exported
    assert "blocklist_http_request_duration_seconds_bucket" in exported
    exprs = dashboard_exprs(grafana_dashboard(services))
    assert exprs
    used = {name for expr in exprs for name in re.findall(r"\bblocklist_[a-z0-9_]+", expr)}
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_dashboard_has_the_required_panels(services: dict[str, dict[str, Any]]) -> None:
    exprs = dashboard_exprs(grafana_dashboard(services))
    joined = "\n".join(exprs)
    assert "rate(blocklist_http_requests_total[1m])" in joined
    for quantile in ("0.5", "0.99"):
        assert re.search(
            rf"histogram_quantile\({quantile},[^\n]*blocklist_http_request_duration_seconds_bucket", joined
        ), quantile
    assert any(
        'blocklist_lookups_total{result="blocked"}' in e and "/" in e and "blocklist_lookups_total[" in e
        for e in exprs
    ), "blocked ratio"
    for name in ("blocklist_version_age_seconds", "blocklist_redis_up"):
        assert name in joined
    assert re.search(r"by \([^)]*outcome[^)]*\) \([^\n]*blocklist_feed_syncs_total", joined)


def test_dashboard_uses_the_provisioned_datasource(services: dict[str, dict[str, Any]]) -> None:
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    datasources = yaml.safe_load(
        (ROOT / mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services
    dashboard = grafana_dashboard(services)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    home = env_of(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(tuple(mounts))
    assert home.endswith("/blocklist.json")
