#!/usr/bin/env bash
# The main job on one machine: a local control plane (etcd + kube-apiserver
# built from Go modules) with the CRDs installed, PostgreSQL, the manager (the
# operator), the gateway and a sync worker (as processes: there is no kubelet
# here), a tenant with a Faker IntegrationSource of 50,000 devices, progress
# while the first run lands, and a summary: `kubectl get serviceradar -A` and
# the device counts per tenant in PostgreSQL. It runs until Ctrl-C; `make
# demo-down` (or `hack/demo.sh down`) stops it from another shell. Set
# DEMO_DETACH=1 to leave it running in the background and return.
#
# DEMO_OVERLAP=<percent> adds a second source to the tenant: the Armis
# emulator (served by demokit on DEMO_ARMIS_ADDR, default 127.0.0.1:50080,
# with DEMO_ARMIS_DEVICES devices, default 10,000, HSRP/VRRP pairs among
# them), and gives it and the Faker source one overlap seed, so that
# <percent>% of the devices are ones both report (same MAC, addresses and
# hostname). The summary then counts the canonical devices that carry both
# sources' identifiers, against the number the overlap makes.
#
# DEMO_EDGE=1 (`make demo-edge`) adds a sync at the edge: an OnPrem
# SyncService acme/edge-site (the manager started with --edge-gateway-address
# set to the gateway's 127.0.0.1 address and a short --edge-cert-lifetime,
# DEMO_EDGE_CERT_LIFETIME, default 6m) with a Faker source faker-edge of 5,000
# devices assigned to it. The demo extracts the onboarding bundle
# (config.json, tls.crt, tls.key, ca.crt) into .demo/edge-site as a site would
# receive it, runs `worker --config .demo/edge-site/config.json` from there
# alone (no kubeconfig, no cluster access, the working directory elsewhere),
# prints the edge source's devices in tenant_acme, and waits for the worker to
# renew its certificate over its ControlStream (due at two thirds of the
# lifetime counted from NotBefore, which is back-dated 5 minutes: about 2m20s
# after issue for 6m), printing the bundle's serial and the renewed one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
PIDFILE="$DEMO_DIR/localcluster.pid"
MANAGER_PIDFILE="$DEMO_DIR/manager.pid"
GATEWAY_PIDFILE="$DEMO_DIR/gateway.pid"
WORKER_PIDFILE="$DEMO_DIR/worker.pid"
ARMIS_PIDFILE="$DEMO_DIR/armis.pid"
EDGE_WORKER_PIDFILE="$DEMO_DIR/edge-worker.pid"
PGDIR_FILE="$DEMO_DIR/postgres.dir" # the server's folder, outside the repo so its system user can reach it
GATEWAY_ADDR="127.0.0.1:50052"
OVERLAP="${DEMO_OVERLAP:-}"
OVERLAP_SEED=42
ARMIS_ADDR="${DEMO_ARMIS_ADDR:-127.0.0.1:50080}"
ARMIS_DEVICES="${DEMO_ARMIS_DEVICES:-10000}"
EDGE="${DEMO_EDGE:-}"
EDGE_LIFETIME="${DEMO_EDGE_CERT_LIFETIME:-6m}"
EDGE_DIR="$DEMO_DIR/edge-site"
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
  stop_pid "$EDGE_WORKER_PIDFILE" "the edge worker"
  stop_pid "$WORKER_PIDFILE" "the worker"
  stop_pid "$GATEWAY_PIDFILE" "the gateway"
  stop_pid "$MANAGER_PIDFILE" "the manager"
  stop_pid "$ARMIS_PIDFILE" "the Armis emulator"
  if [[ -f "$PGDIR_FILE" ]]; then
    step "stopping PostgreSQL"
    "$ROOT/hack/postgres.sh" stop "$(cat "$PGDIR_FILE")" >/dev/null 2>&1 || true
    rm -f "$PGDIR_FILE"
  fi
  stop_pid "$PIDFILE" "the local control plane"
  rm -f "$KUBECONFIG"
}

if [[ "${1:-}" == "down" ]]; then down; exit 0; fi

if [[ -n "$OVERLAP" ]] && ! [[ "$OVERLAP" =~ ^[0-9]+$ && "$OVERLAP" -le 100 ]]; then
  echo "DEMO_OVERLAP must be a percent, 0 to 100 (got '$OVERLAP')" >&2
  exit 2
fi
if [[ -n "$OVERLAP" ]] && ! [[ "$ARMIS_DEVICES" =~ ^[0-9]+$ && "$ARMIS_DEVICES" -ge 1 ]]; then
  echo "DEMO_ARMIS_DEVICES must be a positive number (got '$ARMIS_DEVICES')" >&2
  exit 2
fi

if [[ -n "$EDGE" ]] && ! [[ "$EDGE_LIFETIME" =~ ^[0-9]+m$ && "${EDGE_LIFETIME%m}" -ge 3 ]]; then
  # Certificates are back-dated 5 minutes and renewed at two thirds of
  # NotAfter - NotBefore: below 3 minutes one would be due as soon as issued.
  echo "DEMO_EDGE_CERT_LIFETIME must be whole minutes, at least 3m (got '$EDGE_LIFETIME')" >&2
  exit 2
fi

mkdir -p "$DEMO_DIR"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "a demo is already running (pid $(cat "$PIDFILE")); run 'make demo-down' first" >&2
  exit 1
fi

step "building the Kubernetes binaries (once per machine, about 12 minutes cold)"
ASSETS="$("$ROOT/hack/envtest-assets.sh")"
export TEST_ASSET_KUBE_APISERVER="$ASSETS/kube-apiserver" TEST_ASSET_ETCD="$ASSETS/etcd" TEST_ASSET_KUBECTL="$ASSETS/kubectl"
KUBECTL="$ASSETS/kubectl"
(cd "$ROOT" && go build -o "$ROOT/bin/localcluster" ./hack/localcluster && go build -o "$ROOT/bin/manager" ./cmd/manager \
  && go build -o "$ROOT/bin/gateway" ./cmd/gateway && go build -o "$ROOT/bin/worker" ./cmd/worker && go build -o "$ROOT/bin/demokit" ./hack/demokit)

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

step "starting PostgreSQL (the device store)"
PGDIR="$(mktemp -d /tmp/sync-demo-pg.XXXXXX)"
echo "$PGDIR" > "$PGDIR_FILE"
DSN="$("$ROOT/hack/postgres.sh" start "$PGDIR")"
PSQL_DSN="$DSN"

step "applying a platform, tenant acme and a Faker IntegrationSource of 50,000 devices (config/samples)"
# Namespaces first, so the custom resources find them.
"$KUBECTL" apply -f "$ROOT/config/samples/namespaces.yaml"
for f in tenant_platform tenant_acme syncservice_platform integrationsource_faker; do
  "$KUBECTL" apply -f "$ROOT/config/samples/$f.yaml"
done

SOURCES=(faker-lab)
if [[ -n "$OVERLAP" ]]; then
  step "DEMO_OVERLAP=$OVERLAP: the Armis emulator ($ARMIS_DEVICES devices) as a second source, $OVERLAP% of devices shared with the Faker"
  ARMIS_KEY="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  "$ROOT/bin/demokit" armis --listen "$ARMIS_ADDR" --devices "$ARMIS_DEVICES" --secret-key "$ARMIS_KEY" \
    --overlap-seed "$OVERLAP_SEED" --overlap-percent "$OVERLAP" >"$DEMO_DIR/armis.log" 2>&1 &
  echo $! > "$ARMIS_PIDFILE"
  for i in $(seq 1 40); do [[ -s "$DEMO_DIR/armis.log" ]] && break; sleep 0.25; done
  kill -0 "$(cat "$ARMIS_PIDFILE")" 2>/dev/null || { cat "$DEMO_DIR/armis.log" >&2; exit 1; }
  "$KUBECTL" patch integrationsource -n acme faker-lab --type merge \
    -p "{\"spec\":{\"faker\":{\"overlap\":{\"seed\":$OVERLAP_SEED,\"percent\":$OVERLAP}}}}"
  "$KUBECTL" apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: armis-demo-credentials
  namespace: acme
type: Opaque
stringData:
  secret_key: $ARMIS_KEY
---
apiVersion: integrations.serviceradar.io/v1alpha1
kind: IntegrationSource
metadata:
  name: armis-demo
  namespace: acme
spec:
  type: armis
  endpoint: http://$ARMIS_ADDR
  credentialsSecretRef:
    name: armis-demo-credentials
  syncServiceRef:
    namespace: serviceradar-system
    name: platform-sync
  queries:
    - label: all-devices
      query: in:devices
  pollInterval: 2m
YAML
  SOURCES+=(armis-demo)
fi

EDGE_FLAGS=()
if [[ -n "$EDGE" ]]; then
  step "DEMO_EDGE: an OnPrem SyncService acme/edge-site and a Faker source faker-edge (5,000 devices) assigned to it"
  "$KUBECTL" apply -f - <<YAML
apiVersion: integrations.serviceradar.io/v1alpha1
kind: SyncService
metadata:
  name: edge-site
  namespace: acme
spec:
  serviceType: OnPrem
  partition: default
  capabilities: [faker]
---
apiVersion: integrations.serviceradar.io/v1alpha1
kind: IntegrationSource
metadata:
  name: faker-edge
  namespace: acme
spec:
  type: faker
  syncServiceRef:
    namespace: acme
    name: edge-site
  faker:
    devices: 5000
    churnPercent: 5
    seed: 7
  pollInterval: 1m
YAML
  # The edge reaches the gateway at its (here loopback) external address; the
  # manager writes it into the bundle and puts its host on the gateway's
  # certificate.
  EDGE_FLAGS=(--edge-gateway-address="$GATEWAY_ADDR" --edge-cert-lifetime="$EDGE_LIFETIME")
fi

step "starting the manager (platform bootstrap, Tenant, SyncService and IntegrationSource controllers)"
"$ROOT/bin/manager" --kubeconfig "$KUBECONFIG" --namespace serviceradar-system --leader-elect=false \
  --metrics-bind-address=0 --health-probe-bind-address=0 --gateway-address="$GATEWAY_ADDR" \
  --gateway-tls-secret=sync-gateway-tls ${EDGE_FLAGS[@]+"${EDGE_FLAGS[@]}"} >"$DEMO_DIR/manager.log" 2>&1 &
echo $! > "$MANAGER_PIDFILE"
"$KUBECTL" wait --for=condition=Ready --timeout=120s tenants --all
"$KUBECTL" wait --for=condition=Ready --timeout=120s integrationsources --all -A

step "starting the gateway (mTLS gRPC on $GATEWAY_ADDR, certificate the manager issued into Secret sync-gateway-tls)"
"$ROOT/bin/demokit" gateway-cert --out "$DEMO_DIR/gateway" >/dev/null
"$ROOT/bin/gateway" --listen "$GATEWAY_ADDR" --metrics-bind-address 127.0.0.1:9091 \
  --cert-file "$DEMO_DIR/gateway/tls.crt" --key-file "$DEMO_DIR/gateway/tls.key" --ca-file "$DEMO_DIR/gateway/ca.crt" \
  --postgres-dsn "$DSN" --gateway-id demo >"$DEMO_DIR/gateway.log" 2>&1 &
echo $! > "$GATEWAY_PIDFILE"

step "starting the platform worker for acme from the bootstrap and SVID the manager rendered"
"$ROOT/bin/demokit" worker --out "$DEMO_DIR/worker" --syncservice platform-sync --tenant acme >/dev/null
"$ROOT/bin/worker" --config "$DEMO_DIR/worker/bootstrap.json" --metrics-bind-address 127.0.0.1:9092 \
  >"$DEMO_DIR/worker.log" 2>&1 &
echo $! > "$WORKER_PIDFILE"
for i in $(seq 1 60); do curl -fs http://127.0.0.1:9092/healthz >/dev/null 2>&1 && break; sleep 0.5; done
# The process stands in for the Deployment's pod: report it ready, as the kubelet would.
"$ROOT/bin/demokit" pod-ready --syncservice platform-sync --tenant acme

step "waiting for the first sync run (50,000 devices: Faker -> worker -> gateway -> DIRE -> PostgreSQL)"
devices() { psql "$PSQL_DSN" -Atc "SELECT count(*) FROM tenant_acme.ocsf_devices" 2>/dev/null || echo 0; }
for i in $(seq 1 240); do
  result=Success line=""
  for src in "${SOURCES[@]}"; do
    r="$("$KUBECTL" get integrationsource -n acme "$src" -o jsonpath='{.status.lastSyncResult}')"
    line+="   $src lastSyncResult: ${r:--}"
    [[ "$r" == "Success" ]] || result="${r:--}"
  done
  printf '  %3ss  devices in tenant_acme: %6s%s\n' "$((i * 2))" "$(devices)" "$line"
  [[ "$result" == "Success" ]] && break
  for p in "$GATEWAY_PIDFILE" "$WORKER_PIDFILE"; do
    kill -0 "$(cat "$p")" 2>/dev/null || { echo "$(basename "$p" .pid) stopped:" >&2; tail -20 "$DEMO_DIR/$(basename "$p" .pid).log" >&2; exit 1; }
  done
  sleep 2
done
[[ "$result" == "Success" ]] || { echo "the first runs did not finish in 8 minutes; see $DEMO_DIR/worker.log" >&2; exit 1; }

if [[ -n "$EDGE" ]]; then
  step "the edge: extracting acme/edge-site's onboarding bundle into $EDGE_DIR, as a site receives it"
  "$KUBECTL" wait --for=create --timeout=120s -n acme secret/edge-site-onboarding >/dev/null
  rm -rf "$EDGE_DIR"
  mkdir -m 0700 -p "$EDGE_DIR"
  for k in config.json tls.crt tls.key ca.crt; do
    "$KUBECTL" get secret -n acme edge-site-onboarding -o "jsonpath={.data.${k//./\\.}}" | base64 -d >"$EDGE_DIR/$k"
  done
  chmod 0600 "$EDGE_DIR/tls.key"
  serial() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//; s/^0*//' | tr 'A-F' 'a-f'; }
  BUNDLE_SERIAL="$(serial "$EDGE_DIR/tls.crt")"
  ls -l "$EDGE_DIR"
  cat "$EDGE_DIR/config.json"
  echo "bundle certificate: serial $BUNDLE_SERIAL, $(openssl x509 -noout -subject -enddate -in "$EDGE_DIR/tls.crt" | tr '\n' ' ')"

  step "running the edge worker from $EDGE_DIR alone: worker --config $EDGE_DIR/config.json (no kubeconfig, working directory /)"
  (cd / && exec env -u KUBECONFIG "$ROOT/bin/worker" --config "$EDGE_DIR/config.json" --metrics-bind-address 127.0.0.1:9093 \
    >"$DEMO_DIR/edge-worker.log" 2>&1) &
  echo $! > "$EDGE_WORKER_PIDFILE"
  EDGE_UID="$("$KUBECTL" get integrationsource -n acme faker-edge -o jsonpath='{.metadata.uid}')"
  edge_devices() { psql "$PSQL_DSN" -Atc "SELECT count(*) FROM tenant_acme.source_devices WHERE integration_source_uid = '$EDGE_UID'" 2>/dev/null || echo 0; }
  r=""
  for i in $(seq 1 120); do
    r="$("$KUBECTL" get integrationsource -n acme faker-edge -o jsonpath='{.status.lastSyncResult}')"
    printf '  %3ss  devices of faker-edge in tenant_acme: %5s   faker-edge lastSyncResult: %s\n' "$((i * 2))" "$(edge_devices)" "${r:--}"
    [[ "$r" == "Success" ]] && break
    kill -0 "$(cat "$EDGE_WORKER_PIDFILE")" 2>/dev/null || { echo "the edge worker stopped:" >&2; tail -20 "$DEMO_DIR/edge-worker.log" >&2; exit 1; }
    sleep 2
  done
  [[ "$r" == "Success" ]] || { echo "the edge source's first run did not finish in 4 minutes; see $DEMO_DIR/edge-worker.log" >&2; exit 1; }
  echo "edge source acme/faker-edge: $(edge_devices) devices in tenant_acme, synced by the worker started from $EDGE_DIR"
  echo "(the Faker numbers its devices from 1 in every source, so DIRE merges them with faker-lab's first $(edge_devices) by faker_device_id)"

  epoch() { date -d "$(openssl x509 -noout "-$1" -in "$EDGE_DIR/tls.crt" | cut -d= -f2)" +%s; }
  nb="$(epoch startdate)" na="$(epoch enddate)"
  due=$(( nb + (na - nb) * 2 / 3 ))
  step "waiting for the edge worker to renew its certificate over its ControlStream (due at $(date -d "@$due" +%T), in $(( due - $(date +%s) ))s; the worker checks every minute)"
  renewed=""
  for i in $(seq 1 120); do
    s="$(serial "$EDGE_DIR/tls.crt" 2>/dev/null || true)"
    if [[ -n "$s" && "$s" != "$BUNDLE_SERIAL" ]]; then renewed="$s"; break; fi
    kill -0 "$(cat "$EDGE_WORKER_PIDFILE")" 2>/dev/null || { echo "the edge worker stopped:" >&2; tail -20 "$DEMO_DIR/edge-worker.log" >&2; exit 1; }
    (( i % 6 == 0 )) && printf '  %3ss  still serial %s\n' "$((i * 5))" "$BUNDLE_SERIAL"
    sleep 5
  done
  [[ -n "$renewed" ]] || { echo "the edge worker did not renew its certificate in 10 minutes; see $DEMO_DIR/edge-worker.log" >&2; exit 1; }
  for i in $(seq 1 60); do
    "$KUBECTL" get syncservice -n acme edge-site -o jsonpath='{.status.edgeCertificates[*].serial}' | tr ' ' '\n' | grep -qx "$renewed" && break
    sleep 1
  done
  grep -h 'certificate renewed' "$DEMO_DIR/edge-worker.log" | tail -1 || true
  echo "edge certificate renewed: bundle serial $BUNDLE_SERIAL -> renewed serial $renewed ($(openssl x509 -noout -enddate -in "$EDGE_DIR/tls.crt"))"
  echo "status.edgeCertificates of acme/edge-site (newest first; each accepted until it expires):"
  "$KUBECTL" get syncservice -n acme edge-site -o jsonpath='{range .status.edgeCertificates[*]}{.serial} {.notBefore} {.notAfter}{"\n"}{end}' |
    while read -r sn nb na; do
      case "$sn" in
        "$renewed") what="renewed by the edge worker for its new key" ;;
        "$BUNDLE_SERIAL") what="the extracted bundle's" ;;
        *) what="the onboarding Secret's, re-issued by the manager at its own renewal time" ;;
      esac
      printf '  serial=%s  notBefore=%s  notAfter=%s  (%s)\n' "$sn" "$nb" "$na" "$what"
    done
  echo "CertificateRenewal condition: $("$KUBECTL" get syncservice -n acme edge-site -o jsonpath='{.status.conditions[?(@.type=="CertificateRenewal")].reason}: {.status.conditions[?(@.type=="CertificateRenewal")].message}')"
fi
"$KUBECTL" wait --for=jsonpath='{.status.phase}'=Online --timeout=120s syncservices --all -A >/dev/null

step "kubectl get serviceradar -A"
"$KUBECTL" get serviceradar -A
echo
echo "Devices per tenant in PostgreSQL:"
for schema in $(psql "$PSQL_DSN" -Atc "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'tenant\_%' ORDER BY 1"); do
  printf '  %-24s %s devices (%s available)\n' "$schema" \
    "$(psql "$PSQL_DSN" -Atc "SELECT count(*) FROM $schema.ocsf_devices")" \
    "$(psql "$PSQL_DSN" -Atc "SELECT count(*) FROM $schema.ocsf_devices WHERE is_available")"
done
echo
echo "Run history of acme/faker-lab (status.history, newest first; kubectl describe isrc -n acme faker-lab):"
"$KUBECTL" get integrationsource -n acme faker-lab -o jsonpath='{range .status.history[*]}  {.startTime}  {.result}  {.mode}  fetched={.counts.fetched} created={.counts.created} updated={.counts.updated} unchanged={.counts.unchanged} merged={.counts.merged} retracted={.counts.retracted} refused={.counts.refused}{"\n"}{end}'
if [[ -n "$OVERLAP" ]]; then
  # Shared devices are the ordinals both generators have (below the
  # population's 131,070 shared identities) whose last two digits are below
  # the percent.
  faker_devices="$("$KUBECTL" get integrationsource -n acme faker-lab -o jsonpath='{.spec.faker.devices}')"
  m=$(( faker_devices < ARMIS_DEVICES ? faker_devices : ARMIS_DEVICES ))
  m=$(( m < 131070 ? m : 131070 ))
  expected=$(( m / 100 * OVERLAP + (m % 100 < OVERLAP ? m % 100 : OVERLAP) ))
  both="$(psql "$PSQL_DSN" -Atc "SELECT count(*) FROM tenant_acme.ocsf_devices d
    WHERE EXISTS (SELECT 1 FROM tenant_acme.device_identifiers i WHERE i.device_uid = d.uid AND i.identifier_type = 'faker_device_id')
      AND EXISTS (SELECT 1 FROM tenant_acme.device_identifiers i WHERE i.device_uid = d.uid AND i.identifier_type = 'armis_device_id')")"
  merges="$(psql "$PSQL_DSN" -Atc "SELECT count(*) FROM tenant_acme.merge_audit")"
  echo
  echo "Overlap of faker-lab and armis-demo (DEMO_OVERLAP=$OVERLAP):"
  printf '  %s canonical devices carry both a faker_device_id and an armis_device_id (the overlap makes %s shared devices; %s merges audited)\n' \
    "$both" "$expected" "$merges"
fi

cat <<MSG

Everything keeps running (the Faker source runs again every minute, churning 5% of its IPs).
In another shell:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get serviceradar -A
  $KUBECTL explain integrationsource.spec
  psql '$PSQL_DSN' -c 'SELECT ip, hostname, discovery_sources FROM tenant_acme.ocsf_devices LIMIT 5'
Logs: $DEMO_DIR/{manager,gateway,worker${OVERLAP:+,armis}${EDGE:+,edge-worker}}.log
MSG
if [[ -n "${DEMO_DETACH:-}" ]]; then
  echo "Stop it with: make demo-down"
  exit 0
fi
echo "Press Ctrl-C (or run 'make demo-down') to stop."
wait "$(cat "$PIDFILE")" || true
