#!/usr/bin/env bash
# The main job on one machine: a local control plane (etcd + kube-apiserver
# built from Go modules) with the CRDs installed, the manager (the operator)
# running against it, the samples applied, and `kubectl get serviceradar -A`
# once they are Ready. It runs until Ctrl-C; `make demo-down` (or
# `hack/demo.sh down`) stops it from another shell. Set DEMO_DETACH=1 to leave
# it running in the background and return.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
PIDFILE="$DEMO_DIR/localcluster.pid"
MANAGER_PIDFILE="$DEMO_DIR/manager.pid"
export KUBECONFIG="$DEMO_DIR/kubeconfig"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stop_pid() { # stop_pid <pidfile> <what>
  [[ -f "$1" ]] || return 0
  local pid; pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    step "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

down() {
  stop_pid "$MANAGER_PIDFILE" "the manager"
  stop_pid "$PIDFILE" "the local control plane"
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
(cd "$ROOT" && go build -o "$ROOT/bin/localcluster" ./hack/localcluster && go build -o "$ROOT/bin/manager" ./cmd/manager)

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

step "starting the manager (platform bootstrap, Tenant, SyncService and IntegrationSource controllers)"
"$ROOT/bin/manager" --kubeconfig "$KUBECONFIG" --namespace serviceradar-system --leader-elect=false \
  --metrics-bind-address=0 --health-probe-bind-address=0 --gateway-address=127.0.0.1:50052 \
  >"$DEMO_DIR/manager.log" 2>&1 &
echo $! > "$MANAGER_PIDFILE"
"$KUBECTL" wait --for=condition=Ready --timeout=120s tenants --all
"$KUBECTL" wait --for=condition=Ready --timeout=120s integrationsources --all -A
"$KUBECTL" wait --for=condition=Ready --timeout=120s syncservices --all -A

step "kubectl get serviceradar -A"
"$KUBECTL" get serviceradar -A
echo
echo "Worker Deployments the manager rendered (no kubelet runs here, so they stay unscheduled):"
"$KUBECTL" get deployments,configmaps,secrets -n serviceradar-system -l app.kubernetes.io/managed-by=sync-operator
"$KUBECTL" get secret -n acme acme-edge-onboarding -o jsonpath='{.data.config\.json}' | base64 -d

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
