#!/usr/bin/env bash
# The main job on one machine: a local control plane (etcd + kube-apiserver
# built from Go modules) with the CRDs installed and the samples applied, then
# `kubectl get serviceradar -A`. It runs until Ctrl-C; `make demo-down` (or
# `hack/demo.sh down`) stops it from another shell. Set DEMO_DETACH=1 to leave
# it running in the background and return.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
PIDFILE="$DEMO_DIR/localcluster.pid"
export KUBECONFIG="$DEMO_DIR/kubeconfig"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

down() {
  if [[ -f "$PIDFILE" ]]; then
    local pid; pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      step "stopping the local control plane (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
  rm -f "$KUBECONFIG"
}

if [[ "${1:-}" == "down" ]]; then down; exit 0; fi

mkdir -p "$DEMO_DIR"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "a demo is already running (pid $(cat "$PIDFILE")); run 'make demo-down' first" >&2
  exit 1
fi

step "building the Kubernetes binaries (once per machine, about 12 minutes cold)"
ASSETS="$("$ROOT/hack/envtest-assets.sh")"
export TEST_ASSET_KUBE_APISERVER="$ASSETS/kube-apiserver" TEST_ASSET_ETCD="$ASSETS/etcd" TEST_ASSET_KUBECTL="$ASSETS/kubectl"
KUBECTL="$ASSETS/kubectl"
(cd "$ROOT" && go build -o "$ROOT/bin/localcluster" ./hack/localcluster)

step "starting etcd and kube-apiserver with the CRDs installed"
rm -f "$KUBECONFIG"
"$ROOT/bin/localcluster" --write-kubeconfig "$KUBECONFIG" >"$DEMO_DIR/localcluster.log" 2>&1 &
echo $! > "$PIDFILE"
if [[ -z "${DEMO_DETACH:-}" ]]; then trap 'down' EXIT; trap 'exit 130' INT TERM; fi
for i in $(seq 1 240); do
  [[ -s "$KUBECONFIG" ]] && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { cat "$DEMO_DIR/localcluster.log" >&2; exit 1; }
  sleep 0.5
done
[[ -s "$KUBECONFIG" ]] || { echo "control plane did not start in 2 minutes" >&2; cat "$DEMO_DIR/localcluster.log" >&2; exit 1; }
cat "$DEMO_DIR/localcluster.log"
"$KUBECTL" get crds -l '!nonexistent' -o custom-columns=CRD:.metadata.name,SCOPE:.spec.scope

step "applying config/samples (tenants, sync services, integration sources and their Secrets)"
# Namespaces and Secrets first, so the custom resources find their namespaces.
"$KUBECTL" apply -f "$ROOT/config/samples/namespaces.yaml"
"$KUBECTL" apply -k "$ROOT/config/samples"

step "kubectl get serviceradar -A"
"$KUBECTL" get serviceradar -A

cat <<MSG

The control plane keeps running. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get serviceradar -A
  $KUBECTL explain integrationsource.spec
MSG
if [[ -n "${DEMO_DETACH:-}" ]]; then
  echo "Stop it with: make demo-down"
  exit 0
fi
echo "Press Ctrl-C (or run 'make demo-down') to stop."
wait "$(cat "$PIDFILE")" || true
