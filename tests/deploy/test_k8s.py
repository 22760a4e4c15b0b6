"""The Kubernetes manifests (``k8s/``): rendered with the small renderer in
``tests/deploy/kustomize.py`` (no kubectl needed), validated against the
Kubernetes schemas, and checked against what the code reads and serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from blocklist.settings import load_settings, parse_duration, parse_host_ports
from tests.deploy.kustomize import MultiDocumentPatch, Unsupported, render, strategic_merge
from tests.deploy.support import API_PORT, ROOT, app_paths, known_env_names

Obj = dict[str, Any]

K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "minikube"
NAMESPACE = "blocklist"
#: Our image (the API and the updater); tagged with the project version.
IMAGE = "blocklist-service"
#: Oldest Kubernetes the manifests claim to support, and the newest schemas shipped.
K8S_VERSIONS = ("1.30.0", latest_version())
CLUSTER_DOMAIN = "svc.cluster.local"
#: uvicorn's graceful shutdown in ipchecking/__main__.py (timeout_graceful_shutdown).
UVICORN_GRACEFUL_SECONDS = 10
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


# --- rendering ---------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[Obj]:
    return render(OVERLAY)


@pytest.fixture(scope="module", params=["base", "minikube"])
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    """Each rendering in turn: the base, then the minikube overlay."""
    return render(BASE if request.param == "base" else OVERLAY)


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_templates(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod template) of every Deployment and StatefulSet."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj, obj["spec"]["template"]


def containers(template: Obj) -> list[Obj]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def ours(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(workload, pod template, container) for each container of our image."""
    for workload, template in pod_templates(objects):
        for container in containers(template):
            if container["image"].split(":")[0] == IMAGE:
                yield workload, template, container


def resolve_port(template: Obj, port: int | str) -> int:
    """A probe's or Service's target port as a number (named ports resolved)."""
    if isinstance(port, int):
        return port
    numbers = [
        p["containerPort"] for c in containers(template) for p in c.get("ports", []) if p.get("name") == port
    ]
    assert len(numbers) == 1, f"port name {port!r} names {numbers}"
    return numbers[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def config_data(objects: list[Obj], name: str) -> dict[str, str]:
    data: dict[str, str] = find(objects, "ConfigMap", name)["data"]
    return data


def env_value(container: Obj, name: str) -> str:
    values = [e["value"] for e in container.get("env", []) if e["name"] == name and "value" in e]
    assert len(values) == 1, f"{container['name']}: env {name} set {len(values)} times"
    return str(values[0])


def test_renderer_merges_by_name_and_replaces_other_lists() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b"}], "n": 1}}
    patch = {"spec": {"containers": [{"name": "a", "args": ["3"]}, {"name": "c"}], "n": None}}
    assert strategic_merge(base, patch) == {
        "spec": {"containers": [{"name": "a", "image": "x", "args": ["3"]}, {"name": "b"}, {"name": "c"}]}
    }
    assert base["spec"]["n"] == 1, "the base must not be modified"


def test_renderer_applies_namespace_labels_images_and_patches(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text(
        "resources: [all.yaml]\nnamespace: ns\nimages: [{name: app, newTag: '2.0'}]\n"
        "labels: [{pairs: {team: t}, includeTemplates: true}]\n"
    )
    (tmp_path / "base" / "all.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec: {containers: [{name: c, image: 'app:1.0'}, {name: s, image: 'registry:5000/app'}]}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\npatches:\n  - patch: |\n"
        "      apiVersion: apps/v1\n      kind: Deployment\n      metadata: {name: d}\n"
        "      spec: {template: {spec: {containers: [{name: c, imagePullPolicy: Never}]}}}\n"
    )
    namespace, deployment = render(tmp_path)
    assert "namespace" not in namespace["metadata"]
    assert deployment["metadata"] == {"name": "d", "namespace": "ns", "labels": {"team": "t"}}
    assert deployment["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"a": "b", "team": "t"}
    first, second = deployment["spec"]["template"]["spec"]["containers"]
    assert first == {"name": "c", "image": "app:2.0", "imagePullPolicy": "Never"}
    assert second["image"] == "registry:5000/app", "another image's name must not match"


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(Unsupported, match="commonLabels"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\npatches:\n  - patch: |\n      apiVersion: v1\n      kind: Service\n"
        "      metadata: {name: missing}\n"
    )
    with pytest.raises(ValueError, match="matches 0 objects"):
        render(tmp_path)


def test_renderer_rejects_a_patch_file_with_several_documents(tmp_path: Path) -> None:
    # kustomize v5.0.4 (bundled with kubectl <= 1.30) fails on such a file, so
    # the renderer must not quietly apply both documents.
    (tmp_path / "all.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
    )
    (tmp_path / "both.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {y: '2'}\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources: [all.yaml]\npatches:\n  - path: both.yaml\n")
    with pytest.raises(MultiDocumentPatch, match=r"both\.yaml: 2 YAML documents in one patch"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [all.yaml]\npatches:\n  - patch: |\n"
        "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: a}\n      ---\n"
        "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: b}\n"
    )
    with pytest.raises(MultiDocumentPatch, match="inline patch: 2 YAML documents"):
        render(tmp_path)


def test_every_overlay_patch_file_holds_one_document() -> None:
    # render() already refuses a multi-document patch; this names the file.
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    paths = [entry["path"] for entry in kustomization["patches"] if "path" in entry]
    assert len(paths) >= 5
    for path in paths:
        docs = [d for d in yaml.safe_load_all((OVERLAY / path).read_text()) if d is not None]
        assert len(docs) == 1, f"{path}: {len(docs)} documents"
        stem = Path(path).stem
        assert docs[0]["metadata"]["name"] in stem, f"{path} patches {docs[0]['metadata']['name']}"


# --- schemas -----------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(rendered: list[Obj], version: str) -> None:
    assert len(rendered) >= 15
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")


def test_names_are_unique_and_everything_is_in_the_namespace(rendered: list[Obj]) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in rendered]
    assert len(keys) == len(set(keys))
    namespace = find(rendered, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


# --- the API -----------------------------------------------------------------


def test_api_probes_hit_served_paths_on_the_api_port(rendered: list[Obj]) -> None:
    template = find(rendered, "Deployment", "api")["spec"]["template"]
    (api,) = template["spec"]["containers"]
    assert [p["containerPort"] for p in api["ports"]] == [API_PORT]
    paths = app_paths()
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for kind, probe in probes.items():
        assert probe["path"] in paths, f"{kind} {probe['path']} is not a route of the app"
        assert resolve_port(template, probe["port"]) == API_PORT, kind
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "startup must be generous"


def test_api_service_targets_the_api_port(rendered: list[Obj]) -> None:
    service = find(rendered, "Service", "api")
    template = find(rendered, "Deployment", "api")["spec"]["template"]
    assert selects(service["spec"]["selector"], template["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http", 80)
    assert resolve_port(template, port["targetPort"]) == API_PORT


def test_api_drains_before_sigterm_within_the_grace_period(rendered: list[Obj]) -> None:
    spec = find(rendered, "Deployment", "api")["spec"]["template"]["spec"]
    command = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop >= 3, "endpoint removal needs a few seconds to reach every proxy"
    assert pre_stop + UVICORN_GRACEFUL_SECONDS < spec["terminationGracePeriodSeconds"]


def test_api_spreads_over_nodes_and_has_requests_for_the_autoscaler(rendered: list[Obj]) -> None:
    template = find(rendered, "Deployment", "api")["spec"]["template"]
    (spread,) = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    resources = template["spec"]["containers"][0]["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_hpa_scales_the_api_deployment_on_cpu(rendered: list[Obj]) -> None:
    hpa = find(rendered, "HorizontalPodAutoscaler", "api")
    target = hpa["spec"]["scaleTargetRef"]
    deployment = find(rendered, target["kind"], target["name"])
    assert (target["apiVersion"], deployment["apiVersion"], target["kind"]) == (
        "apps/v1",
        "apps/v1",
        "Deployment",
    )
    assert deployment["metadata"]["name"] == "api"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] == 2


def test_hpa_maximum_per_rendering(base: list[Obj], overlay: list[Obj]) -> None:
    assert find(base, "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"] == 10
    assert find(overlay, "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"] == 4


def test_pdb_covers_the_api_pods_and_lets_a_drain_proceed(rendered: list[Obj]) -> None:
    pdb = find(rendered, "PodDisruptionBudget", "api")
    deployment = find(rendered, "Deployment", "api")
    assert selects(
        pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]


# --- the updater -------------------------------------------------------------


def test_updater_is_one_replica_recreated(rendered: list[Obj]) -> None:
    updater = find(rendered, "Deployment", "updater")
    assert updater["spec"]["replicas"] == 1
    assert updater["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = updater["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "blocklistupdater"]


def test_updater_liveness_checks_its_heartbeat_within_the_ttl(rendered: list[Obj]) -> None:
    (container,) = find(rendered, "Deployment", "updater")["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]
    assert probe["exec"]["command"] == ["python", "-m", "blocklistupdater", "--check"]
    ttl = parse_duration(config_data(rendered, "blocklist-config")["BLOCKLIST_HEARTBEAT_TTL"])
    # The key is renewed every TTL/3: a probe more often than that learns nothing
    # new; failing only after at least one TTL rides out a Redis failover.
    assert probe["periodSeconds"] >= ttl / 3
    assert probe["periodSeconds"] * probe["failureThreshold"] >= ttl
    assert probe["initialDelaySeconds"] >= ttl
    assert probe["timeoutSeconds"] >= 5, "a Python start plus a sentinel lookup"


def test_metrics_ports_match_the_settings_and_scrape_annotations(rendered: list[Obj]) -> None:
    updater = find(rendered, "Deployment", "updater")["spec"]["template"]
    (container,) = updater["spec"]["containers"]
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert port["containerPort"] == int(env_value(container, "BLOCKLIST_METRICS_PORT")) == 9100
    assert env_value(container, "BLOCKLIST_METRICS_HOST") == "0.0.0.0"
    assert int(updater["metadata"]["annotations"]["prometheus.io/port"]) == 9100
    api = find(rendered, "Deployment", "api")["spec"]["template"]
    assert int(api["metadata"]["annotations"]["prometheus.io/port"]) == API_PORT
    assert api["metadata"]["annotations"]["prometheus.io/path"] in app_paths()


# --- settings ----------------------------------------------------------------


def test_every_env_name_is_a_setting(rendered: list[Obj]) -> None:
    known = known_env_names()
    config = config_data(rendered, "blocklist-config")
    assert set(config) <= known, set(config) - known
    seen = 0
    for _, _, container in ours(rendered):
        for source in container.get("envFrom", []):
            keys = set(config_data(rendered, source["configMapRef"]["name"]))
            assert keys <= known, keys - known
            seen += 1
        for env in container.get("env", []):
            assert env["name"] in known, f"{container['name']}: {env['name']} is not read by Settings"
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in find(rendered, "Secret", ref["name"])["stringData"]
    assert seen == 2, "both the API and the updater load blocklist-config"


@pytest.mark.parametrize("deployment", ["api", "updater"])
def test_the_pods_environment_is_valid_settings(
    base: list[Obj], deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("BLOCKLIST_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    (container,) = find(base, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    for source in container["envFrom"]:
        for key, value in config_data(base, source["configMapRef"]["name"]).items():
            monkeypatch.setenv(key, value)
    for env in container["env"]:
        monkeypatch.setenv(env["name"], env.get("value", "from-the-secret"))
    settings = load_settings()
    assert not settings.embedded
    assert len(settings.redis_sentinels) == 3
    assert settings.redis_password is not None
    assert settings.redis_sentinel_password is not None
    assert str(settings.state_dir) == "/var/lib/blocklist"


def test_state_dir_and_tmp_are_writable_mounts(rendered: list[Obj]) -> None:
    state_dir = config_data(rendered, "blocklist-config")["BLOCKLIST_STATE_DIR"]
    for workload, template, container in ours(rendered):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in (state_dir, "/tmp"):
            assert path in mounts, f"{workload['metadata']['name']}: {path} not mounted"
            assert not mounts[path].get("readOnly", False)
            assert "emptyDir" in volumes[mounts[path]["name"]]


# --- security ----------------------------------------------------------------


def effective(template: Obj, container: Obj, key: str) -> Any:
    """A security setting as it applies to ``container`` (container over pod)."""
    container_value = container.get("securityContext", {}).get(key)
    if container_value is not None:
        return container_value
    return template["spec"].get("securityContext", {}).get(key)


def test_our_pods_run_as_the_image_user_read_only_without_capabilities(rendered: list[Obj]) -> None:
    found = set()
    for workload, template, container in ours(rendered):
        found.add(workload["metadata"]["name"])
        assert effective(template, container, "runAsNonRoot") is True
        assert effective(template, container, "runAsUser") == 10001
        assert effective(template, container, "runAsGroup") == 10001
        assert template["spec"]["securityContext"]["fsGroup"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert template["spec"]["automountServiceAccountToken"] is False
    assert found == {"api", "updater"}


def test_every_pod_meets_the_restricted_pod_security_standard(rendered: list[Obj]) -> None:
    """The namespace enforces "restricted": a pod missing one of these is refused."""
    for workload, template in pod_templates(rendered):
        name = workload["metadata"]["name"]
        spec = template["spec"]
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in containers(template):
            context = container.get("securityContext", {})
            assert effective(template, container, "runAsNonRoot") is True, name
            assert effective(template, container, "runAsUser") != 0, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("privileged") is not True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert not set(context["capabilities"].get("add", [])) - {"NET_BIND_SERVICE"}, name
            assert context.get("readOnlyRootFilesystem") is True, name
            seccomp = effective(template, container, "seccompProfile")
            assert seccomp, name
            assert seccomp["type"] in ("RuntimeDefault", "Localhost"), name


# --- wiring: selectors, ports, images ----------------------------------------


def test_every_service_and_pdb_selects_pods(rendered: list[Obj]) -> None:
    templates = [t for _, t in pod_templates(rendered)]
    for service in of_kind(rendered, "Service"):
        matching = [t for t in templates if selects(service["spec"]["selector"], t["metadata"]["labels"])]
        assert matching, f"Service {service['metadata']['name']} selects no pod template"
        for port in service["spec"]["ports"]:
            for template in matching:
                resolve_port(template, port["targetPort"])
    for pdb in of_kind(rendered, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selects(selector, t["metadata"]["labels"]) for t in templates), pdb["metadata"]["name"]


def test_workload_selectors_and_spread_constraints_match_their_own_pods(rendered: list[Obj]) -> None:
    for workload, template in pod_templates(rendered):
        labels = template["metadata"]["labels"]
        assert selects(workload["spec"]["selector"]["matchLabels"], labels)
        for spread in template["spec"].get("topologySpreadConstraints", []):
            assert selects(spread["labelSelector"]["matchLabels"], labels), workload["metadata"]["name"]


def test_images_are_tagged_and_the_overlay_never_pulls_ours(base: list[Obj], overlay: list[Obj]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for rendering, policy in ((base, "IfNotPresent"), (overlay, "Never")):
        mine = list(ours(rendering))
        assert len(mine) == 2
        for _, _, container in mine:
            assert container["image"] == f"{IMAGE}:{version}"
            assert container["imagePullPolicy"] == policy
        for _, template in pod_templates(rendering):
            for container in containers(template):
                assert re.fullmatch(r"[\w./-]+:[\w.-]+", container["image"]), container["image"]
                if container["image"].split(":")[0] != IMAGE:
                    assert container["imagePullPolicy"] != "Never", "the overlay builds only our image"


def test_overlay_exposes_the_api_as_a_node_port(overlay: list[Obj]) -> None:
    service = find(overlay, "Service", "api")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert 30000 <= port["nodePort"] <= 32767
    assert port["port"] == 80


# --- Redis and Sentinel ------------------------------------------------------


def stable_names(objects: list[Obj], statefulset: str) -> list[str]:
    """The pod DNS names of a StatefulSet, through its (headless) Service."""
    sts = find(objects, "StatefulSet", statefulset)
    service = find(objects, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "pod DNS names need a headless Service"
    assert service["spec"]["publishNotReadyAddresses"] is True, "names must resolve while pods start"
    assert selects(service["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    namespace = sts["metadata"]["namespace"]
    return [
        f"{statefulset}-{i}.{service['metadata']['name']}.{namespace}.{CLUSTER_DOMAIN}"
        for i in range(sts["spec"]["replicas"])
    ]


def test_redis_topology(rendered: list[Obj]) -> None:
    primary = find(rendered, "StatefulSet", "redis-primary")
    replica = find(rendered, "StatefulSet", "redis-replica")
    sentinel = find(rendered, "StatefulSet", "redis-sentinel")
    assert (primary["spec"]["replicas"], replica["spec"]["replicas"], sentinel["spec"]["replicas"]) == (
        1,
        2,
        3,
    )
    for sts in (primary, replica):
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        assert claim["metadata"]["name"] in {m["name"] for m in container["volumeMounts"]}
    sentinel_service = find(rendered, "Service", "redis-sentinel")
    assert "clusterIP" not in sentinel_service["spec"]
    assert [p["port"] for p in sentinel_service["spec"]["ports"]] == [26379]


def test_clients_and_servers_agree_on_the_stable_names(rendered: list[Obj]) -> None:
    config = config_data(rendered, "blocklist-config")
    redis = config_data(rendered, "redis-config")
    sentinels = parse_host_ports(config["BLOCKLIST_REDIS_SENTINELS"])
    assert [host for host, _ in sentinels] == stable_names(rendered, "redis-sentinel")
    assert {port for _, port in sentinels} == {int(redis["SENTINEL_PORT"])}
    assert config["BLOCKLIST_REDIS_SENTINEL_SERVICE"] == redis["SENTINEL_MASTER"]
    assert redis["REDIS_PRIMARY_HOST"] == stable_names(rendered, "redis-primary")[0]
    assert redis["SENTINEL_HOST"] == f"redis-sentinel.{NAMESPACE}.{CLUSTER_DOMAIN}"
    replicas = int(find(rendered, "StatefulSet", "redis-sentinel")["spec"]["replicas"])
    assert replicas // 2 < int(redis["SENTINEL_QUORUM"]) <= replicas, "quorum: a majority of the sentinels"
    for name in ("redis-primary", "redis-replica", "redis-sentinel"):
        sts = find(rendered, "StatefulSet", name)
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        announce = env_value(container, "ANNOUNCE_HOST")
        expected = f"$(POD_NAME).{sts['spec']['serviceName']}.$(POD_NAMESPACE).{CLUSTER_DOMAIN}"
        assert announce == expected
        env_names = [e["name"] for e in container["env"]]
        assert env_names.index("POD_NAME") < env_names.index("ANNOUNCE_HOST"), (
            "$(VAR) needs VAR defined first"
        )
        assert env_names.index("POD_NAMESPACE") < env_names.index("ANNOUNCE_HOST")


def test_redis_start_scripts_exist_and_pass_shellcheck(rendered: list[Obj], tmp_path: Path) -> None:
    scripts = config_data(rendered, "redis-scripts")
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    for _, template in pod_templates(rendered):
        for container in containers(template):
            commands = [container.get("command", [])]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                commands.append(container.get(probe, {}).get("exec", {}).get("command", []))
            for command in commands:
                for arg in command:
                    if arg.startswith("/scripts/"):
                        assert arg.removeprefix("/scripts/") in scripts, arg
    result = subprocess.run(
        [str(SHELLCHECK), "--shell=sh", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    start = scripts["redis-start.sh"]
    for flag in ("--appendonly yes", "--replicaof", "--replica-announce-ip"):
        assert flag in start
    sentinel = scripts["sentinel-start.sh"]
    for line in ("sentinel resolve-hostnames yes", "sentinel announce-hostnames yes", "sentinel announce-ip"):
        assert line in sentinel
    # Names must be resolvable before "sentinel monitor" names one.
    assert sentinel.index("resolve-hostnames") < sentinel.index("sentinel monitor")
