#!/usr/bin/env bash
# Deploy the blocklist service to a local minikube cluster.
#
#   ./setup_minikube.sh            start (or reuse) the minikube profile "blocklist",
#                                  build the image inside it, apply
#                                  k8s/overlays/minikube, wait for every rollout,
#                                  then GET /check_ip/1.2.3.4 through a
#                                  temporary port-forward
#   ./setup_minikube.sh --delete   delete the namespace and the minikube profile
#
# Environment: MINIKUBE_CPUS (default 2), MINIKUBE_MEMORY (MiB, default 4096),
# ROLLOUT_TIMEOUT (per workload, default 300s), SMOKE_PORT (local port of the
# temporary port-forward, default 18000).
#
# Every kubectl call names the profile's context: nothing touches another
# cluster. Runs only the shell, coreutils, minikube, kubectl, docker and curl.
set -euo pipefail

PROFILE=blocklist
NAMESPACE=blocklist
IMAGE=blocklist-service:0.1.0
OVERLAY=k8s/overlays/minikube
MINIKUBE_CPUS="${MINIKUBE_CPUS:-2}"
MINIKUBE_MEMORY="${MINIKUBE_MEMORY:-4096}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-300s}"
SMOKE_PORT="${SMOKE_PORT:-18000}"

PF_PID=""
PF_LOG=""

cd "$(dirname "$0")"

log() {
    printf '==> %s\n' "$*"
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s [--delete]\n' "$0"
    printf '  (no argument)  start or reuse minikube profile %s, build, deploy, smoke test\n' "$PROFILE"
    printf '  --delete       delete namespace %s and minikube profile %s\n' "$NAMESPACE" "$PROFILE"
}

install_hint() {
    case "$1" in
        minikube) printf 'https://minikube.sigs.k8s.io/docs/start/' ;;
        kubectl) printf 'https://kubernetes.io/docs/tasks/tools/' ;;
        docker) printf 'https://docs.docker.com/engine/install/ (minikube runs its node in Docker)' ;;
        curl) printf 'your package manager, e.g. apt-get install curl / brew install curl' ;;
        *) printf 'see its documentation' ;;
    esac
}

# require TOOL...: fail, naming every missing tool and where to get it.
require() {
    local tool missing=0
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            printf 'missing: %s; install: %s\n' "$tool" "$(install_hint "$tool")" >&2
            missing=1
        fi
    done
    if [[ "$missing" -ne 0 ]]; then
        die "prerequisites missing (see above)"
    fi
}

kc() {
    kubectl --context "$PROFILE" "$@"
}

cleanup() {
    if [[ -n "$PF_PID" ]]; then
        kill "$PF_PID" 2>/dev/null || true
        wait "$PF_PID" 2>/dev/null || true
    fi
    if [[ -n "$PF_LOG" ]]; then
        rm -f "$PF_LOG"
    fi
}
trap cleanup EXIT

teardown() {
    require minikube kubectl
    if minikube status -p "$PROFILE" >/dev/null 2>&1; then
        minikube -p "$PROFILE" update-context >/dev/null
        log "deleting namespace $NAMESPACE"
        kc delete namespace "$NAMESPACE" --ignore-not-found --timeout=180s
    fi
    log "deleting minikube profile $PROFILE"
    minikube delete -p "$PROFILE"
}

start_cluster() {
    if minikube status -p "$PROFILE" >/dev/null 2>&1; then
        log "reusing the running minikube profile $PROFILE"
        # kc needs the profile's kube context; it may be gone (another
        # kubeconfig, `kubectl config delete-context`): recreate it.
        minikube -p "$PROFILE" update-context >/dev/null
    else
        if ! docker info >/dev/null 2>&1; then
            die "the Docker daemon is not running (minikube's docker driver needs it): start Docker and run again"
        fi
        log "starting minikube profile $PROFILE"
        minikube start -p "$PROFILE" --driver=docker --cpus="$MINIKUBE_CPUS" --memory="$MINIKUBE_MEMORY"
    fi
    # The HorizontalPodAutoscaler scales on CPU: it needs metrics-server.
    minikube -p "$PROFILE" addons enable metrics-server
}

# Redis first (the StatefulSets), then the updater and the API: both need
# Redis and its sentinels to become ready.
wait_rollouts() {
    local kind name
    for kind in statefulset deployment; do
        for name in $(kc -n "$NAMESPACE" get "$kind" -o name); do
            log "waiting for $name"
            kc -n "$NAMESPACE" rollout status "$name" --timeout="$ROLLOUT_TIMEOUT"
        done
    done
}

smoke_test() {
    local url="http://127.0.0.1:$SMOKE_PORT/check_ip/1.2.3.4"
    PF_LOG="$(mktemp)"
    # kubectl itself in the background (not the kc function, which would
    # leave kubectl as the child of a subshell), so cleanup kills it.
    kubectl --context "$PROFILE" -n "$NAMESPACE" port-forward svc/api "$SMOKE_PORT:80" >"$PF_LOG" 2>&1 &
    PF_PID=$!
    log "smoke test: GET $url"
    if ! curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 5 "$url"; then
        cat "$PF_LOG" >&2
        die "smoke test failed"
    fi
    printf '\n'
}

deploy() {
    local existing
    require minikube kubectl docker curl
    if [[ ! -f Dockerfile ]]; then
        die "no Dockerfile in $(pwd): run this script from the repository"
    fi
    start_cluster

    log "building $IMAGE inside minikube"
    minikube -p "$PROFILE" image build -t "$IMAGE" .

    existing="$(kc -n "$NAMESPACE" get deployment -o name 2>/dev/null || true)"
    log "applying $OVERLAY"
    kc apply -k "$OVERLAY"
    if [[ -n "$existing" ]]; then
        # Same tag, new image: the pod templates did not change, so restart.
        log "restarting the deployments onto the new image"
        kc -n "$NAMESPACE" rollout restart deployment
    fi
    wait_rollouts

    log "deployed. Reach the API with:"
    printf '    kubectl --context %s -n %s port-forward svc/api 8000:80\n' "$PROFILE" "$NAMESPACE"
    printf '    curl localhost:8000/check_ip/1.2.3.4\n'
    printf '  or through the NodePort: minikube -p %s service api -n %s --url\n' "$PROFILE" "$NAMESPACE"
    smoke_test
}

main() {
    case "${1:-}" in
        "") deploy ;;
        --delete) teardown ;;
        -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
