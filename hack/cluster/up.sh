#!/usr/bin/env bash
# `make cluster`: a real single-node Kubernetes cluster on this machine, as
# root. Builds what is missing (kube binaries from Go modules, the pause
# image from pause.c), installs the Debian packages it needs (containerd,
# runc, CNI plugins, iptables, conntrack), then starts, each by PID, inside a
# network and mount namespace of its own (see lib.sh): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd with runc and bridge
# CNI, the kubelet and kube-proxy (iptables); and on the host only a loopback
# forwarder to the API server. Writes bin/cluster/kubeconfig, then proves the
# node works: the project's image (bin/image/sync-operator.tar, `make image`)
# runs `/worker --version` as a restricted Pod to completion, and a
# long-running Pod gets a 10.244.0.x address that answers from the node's
# namespace. `make cluster-down` (hack/cluster/down.sh) undoes all of it.
#
# Environment: CLUSTER_API_PORT (6443), CLUSTER_IMAGE_TAR
# (bin/image/sync-operator.tar; empty skips the image check), CLUSTER_DIR
# (bin/cluster), K8S_VERSION.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root cluster

IMAGE_TAR="${CLUSTER_IMAGE_TAR-$ROOT/bin/image/sync-operator.tar}"
started_at=$SECONDS

if alive "$(holder_pid)"; then
  log "a cluster is already running (holder PID $(holder_pid)); 'make cluster-down' stops it"
  log "KUBECONFIG=$KUBECONFIG_OUT"
  exit 0
fi
if [[ -e "$RUN" ]]; then
  log "state of an earlier cluster that did not stop cleanly is left; cleaning it up first"
  "$ROOT/hack/cluster/down.sh"
fi

# --- prerequisites -----------------------------------------------------------
install_packages() {
  local missing=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x "$CNI_BIN_DIR/bridge" && -x "$CNI_BIN_DIR/host-local" && -x "$CNI_BIN_DIR/portmap" && -x "$CNI_BIN_DIR/loopback" ]] ||
    missing+=(containernetworking-plugins)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v iptables >/dev/null && command -v iptables-restore >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v nsenter >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 ||
    { apt-get update >>"$LOGS/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1; } ||
    die "apt-get install ${missing[*]} failed; see $LOGS/apt.log"
}

mkdir -p "$LOGS"
install_packages
log "building the node binaries (once) and the pause image (once)"
"$ROOT/hack/cluster/assets.sh" >/dev/null
"$ROOT/hack/cluster/pause-image.sh" >/dev/null
APIFORWARD="$ROOT/bin/cluster-apiforward"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$APIFORWARD" ./hack/cluster/apiforward)
if [[ -n "$IMAGE_TAR" && ! -s "$IMAGE_TAR" ]]; then
  die "$IMAGE_TAR is missing: run 'make image' first (make cluster does), or set CLUSTER_IMAGE_TAR= to skip the image check"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null; then
  die "127.0.0.1:$API_PORT is in use on the host; set CLUSTER_API_PORT to a free port"
fi
[[ -e "/sys/class/net/$HOST_VETH" ]] && die "a network interface $HOST_VETH exists already; remove it (ip link del $HOST_VETH) or run 'make cluster-down'"
# cluster-down removes the pod cgroups and kills their processes: refuse to
# run next to another kubelet's.
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [[ -d "$d" ]] && die "$d exists: another kubelet runs on this machine (or one was not cleaned up); stop it first"
done
mkdir -p "$RUN" "$STATE" "$CONF" "$PKI"

# If anything below fails, stop what was started.
on_exit() {
  local rc=$?
  ((rc == 0)) && return 0
  log "make cluster failed (exit $rc); logs are in $LOGS; stopping what was started"
  "$ROOT/hack/cluster/down.sh" || true
  exit "$rc"
}
trap on_exit EXIT

# --- certificates and kubeconfigs ------------------------------------------
log "issuing certificates"
openssl_quiet() { openssl "$@" 2>>"$LOGS/openssl.log"; }
newkey() { openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; chmod 600 "$1"; }
# newca NAME CN: a self-signed CA.
newca() {
  newkey "$PKI/$1.key"
  openssl_quiet req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -out "$PKI/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
}
# issue NAME SUBJECT USAGES [SANS] [CA]: a key and a certificate signed by CA
# (default: the cluster CA).
issue() {
  local name="$1" subj="$2" eku="$3" sans="${4:-}" ca="${5:-ca}" ext
  newkey "$PKI/$name.key"
  openssl_quiet req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
  [[ -n "$sans" ]] && ext+=$'\n'"subjectAltName=$sans"
  openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 365 -out "$PKI/$name.crt" -extfile <(printf '%s\n' "$ext")
  rm -f "$PKI/$name.csr"
}
newca ca sync-cluster-ca
# The front proxy (aggregated API servers such as metrics-server) has a CA of
# its own, as in kubeadm clusters.
newca front-proxy-ca sync-cluster-front-proxy-ca
issue front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
issue kube-apiserver "/CN=kube-apiserver" serverAuth \
  "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" clientAuth
issue admin "/O=system:masters/CN=sync-cluster-admin" clientAuth
issue kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
issue kube-scheduler "/CN=system:kube-scheduler" clientAuth
issue kube-proxy "/CN=system:kube-proxy" clientAuth
issue kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
issue kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME"
newkey "$PKI/sa.key"
openssl_quiet pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# kubeconfig OUT CERTNAME: a kubeconfig for 127.0.0.1:$API_PORT, which is the
# API server itself inside the node's namespace and the forwarder on the host.
kubeconfig() {
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sync-cluster
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $($b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 "$PKI/$2.crt")
    client-key-data: $($b64 "$PKI/$2.key")
contexts:
- name: sync-cluster
  context: {cluster: sync-cluster, user: $2}
current-context: sync-cluster
EOF
  chmod 600 "$1"
}
for c in kube-controller-manager kube-scheduler kube-proxy kubelet-client; do kubeconfig "$CONF/$c.kubeconfig" "$c"; done

# --- the node's namespaces ---------------------------------------------------
log "creating the node's network and mount namespaces"
: >"$RUN/created-dirs"
for d in "${HOST_BIND_DIRS[@]}"; do
  if [[ ! -e "$d" ]]; then
    mkdir -p "$d"
    echo "$d" >>"$RUN/created-dirs"
  fi
  mkdir -p "$STATE/bind$d"
done
for s in "${KUBELET_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$RUN/sysctls"
bind_cmds=""
for d in "${HOST_BIND_DIRS[@]}"; do bind_cmds+="mount --bind '$STATE/bind$d' '$d'; "; done
# setsid, not a fork: the holder's PID is the one recorded.
setsid unshare --net --mount --propagation private -- sh -c "
  set -e
  mount --make-rshared /
  mount -t tmpfs -o mode=0755,size=256m sync-cluster-run /run
  $bind_cmds
  echo ok >'$RUN/holder.ready'
  exec sleep infinity" >"$LOGS/holder.log" 2>&1 </dev/null &
echo $! >"$RUN/holder.pid"
wait_for "the namespace holder" 10 test -s "$RUN/holder.ready" || die "the namespace holder did not start; see $LOGS/holder.log"
H="$(holder_pid)"
readlink "/proc/$H/ns/mnt" >"$RUN/mntns"
readlink "/proc/$H/ns/net" >"$RUN/netns"

# The veth pair: the host end stays without an address and never forwards,
# the node end holds the node IP. No default route in the namespace.
ip link add "$HOST_VETH" type veth peer name eth0 netns "$H"
sysctl -qw "net.ipv6.conf.$HOST_VETH.disable_ipv6=1" "net.ipv4.conf.$HOST_VETH.forwarding=0"
ip link set "$HOST_VETH" up
nexec sh -ec "
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=1
  ip link set lo up
  ip addr add $NODE_IP/$NODE_PREFIX dev eth0
  ip link set eth0 up
  ip route add $SERVICE_CIDR dev eth0 src $NODE_IP"
# Pod -> Service -> pod on the same bridge needs bridged traffic to pass
# iptables (br_netfilter); it is on by default.
[[ "$(nexec cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" == 1 ]] ||
  log "warning: net.bridge.bridge-nf-call-iptables is not 1: a pod reaching a Service backed by a pod of the same node will fail"

# start NAME CMD...: runs CMD detached in the node's namespaces, logs to
# $LOGS/NAME.log, records its PID.
start() {
  local name="$1" h
  shift
  h="$(holder_pid)"
  setsid nsenter --mount="/proc/$h/ns/mnt" --net="/proc/$h/ns/net" -- "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}
# running NAME: the component's process is alive (else print its log tail).
running() {
  alive "$(cat "$RUN/$1.pid")" && return 0
  log "$1 exited; last lines of $LOGS/$1.log:"
  tail -20 "$LOGS/$1.log" >&2
  return 1
}
# ready NAME SECONDS CMD...: wait for CMD while the component runs.
ready() {
  local name="$1" limit="$2" i
  shift 2
  for ((i = 0; i < limit; i++)); do
    running "$name" || return 1
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "$name did not become ready within ${limit}s; last lines of $LOGS/$name.log:"
  tail -20 "$LOGS/$name.log" >&2
  return 1
}

# --- control plane ------------------------------------------------------------
log "starting etcd and kube-apiserver"
start etcd "$K8S_DIR/etcd" --name=sync-cluster --data-dir="$STATE/etcd" \
  --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
  --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
  --initial-cluster=sync-cluster=http://127.0.0.1:2380 --listen-metrics-urls=http://127.0.0.1:2381 \
  --unsafe-no-fsync --snapshot-count=10000
ready etcd 30 nexec curl -fsS http://127.0.0.1:2379/health

start kube-apiserver "$K8S_DIR/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port="$API_PORT" --advertise-address="$NODE_IP" \
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/kube-apiserver.crt" --tls-private-key-file="$PKI/kube-apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --profiling=false --v=1
ready kube-apiserver 120 nexec curl -fsS --cacert "$PKI/ca.crt" "https://127.0.0.1:$API_PORT/readyz"

# The host's only door to the cluster: host 127.0.0.1 -> namespace 127.0.0.1.
setsid "$APIFORWARD" --netns="/proc/$H/ns/net" --listen="127.0.0.1:$API_PORT" --target="127.0.0.1:$API_PORT" \
  >"$LOGS/apiforward.log" 2>&1 </dev/null &
echo $! >"$RUN/apiforward.pid"
ready apiforward 10 curl -fsS --cacert "$PKI/ca.crt" "https://127.0.0.1:$API_PORT/readyz"

kubeconfig "$KUBECONFIG_OUT" admin
KUBECTL=("$K8S_DIR/kubectl" --kubeconfig="$KUBECONFIG_OUT")
# The API server's client certificate for kubelet logs, exec and port-forward.
"${KUBECTL[@]}" create clusterrolebinding kube-apiserver-kubelet-client \
  --clusterrole=system:kubelet-api-admin --user=kube-apiserver-kubelet-client >/dev/null

log "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager "$K8S_DIR/kube-controller-manager" \
  --kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$POD_CIDR" --allocate-node-cidrs=false \
  --controllers='*,bootstrapsigner,tokencleaner' --profiling=false --v=1
start kube-scheduler "$K8S_DIR/kube-scheduler" \
  --kubeconfig="$CONF/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$CONF/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$CONF/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
ready kube-controller-manager 60 nexec curl -fsSk https://127.0.0.1:10257/healthz
ready kube-scheduler 60 nexec curl -fsSk https://127.0.0.1:10259/healthz

# --- container runtime --------------------------------------------------------
log "starting containerd"
mkdir -p "$CONF/cni" "$STATE/containerd" "$STATE/containerd-opt"
cat >"$CONF/cni/10-sync-cluster.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sync-cluster",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "/run/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat >"$CONF/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # CAP_SYS_RESOURCE is not in this machine's bounding set, so a negative
  # oom_score_adj would be refused: keep containers at or above containerd's.
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CONF/cni"
    max_conf_num = 1
EOF
start containerd containerd --config="$CONF/containerd.toml"
CTR=(nexec ctr --address="$CONTAINERD_SOCK" --namespace=k8s.io)
ready containerd 30 "${CTR[@]}" version
log "importing the pause image"
"${CTR[@]}" images import "$PAUSE_TAR" >"$LOGS/ctr-import.log" 2>&1

# --- kubelet and kube-proxy ---------------------------------------------------
log "starting the kubelet"
cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 only: kubelet v1.37 refuses it unless told, and
# manages cgroups itself (no systemd).
failCgroupV1: false
cgroupDriver: cgroupfs
# The kubelet may not lower its own oom_score_adj (no CAP_SYS_RESOURCE).
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: 0.0.0.0
port: 10250
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
# A test node on a shared disk: never evict or collect images for disk use.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 110
EOF
start kubelet "$K8S_DIR/kubelet" --config="$CONF/kubelet.yaml" --kubeconfig="$CONF/kubelet-client.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
ready kubelet 90 "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s

log "starting kube-proxy (iptables)"
cat >"$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CONF/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the (global) conntrack table size and timeouts as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
nodePortAddresses: [primary]
EOF
start kube-proxy "$K8S_DIR/kube-proxy" --config="$CONF/kube-proxy.yaml" --v=1
ready kube-proxy 60 nexec curl -fsS http://127.0.0.1:10256/healthz
ready kube-proxy 60 nexec curl -fsS --cacert "$PKI/ca.crt" "https://$SERVICE_IP/readyz"
log "control plane and node are up in $((SECONDS - started_at))s"

# --- proof: pods run --------------------------------------------------------
NS=sync-cluster-check
"${KUBECTL[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
EOF
wait_for "ServiceAccount $NS/default" 60 "${KUBECTL[@]}" -n "$NS" get serviceaccount default
# restricted_pod NAME IMAGE RESTART COMMAND_JSON: a Pod that passes the
# restricted Pod Security Standard.
restricted_pod() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS}
spec:
  restartPolicy: $3
  automountServiceAccountToken: true
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $2
    imagePullPolicy: Never
    command: $4
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
      readOnlyRootFilesystem: true
    resources:
      limits: {cpu: 200m, memory: 64Mi}
EOF
}
# seconds_between T1 T2: RFC 3339 times to seconds.
seconds_between() { echo $(($(date -d "$2" +%s) - $(date -d "$1" +%s))); }
pod_field() { "${KUBECTL[@]}" -n "$NS" get pod "$1" -o jsonpath="$2"; }

log "running a long-lived restricted pod (the pause image)"
restricted_pod sleeper "$PAUSE_IMAGE" Always '["/pause"]' | "${KUBECTL[@]}" apply -f - >/dev/null
t0=$SECONDS
"${KUBECTL[@]}" -n "$NS" wait --for=condition=Ready pod/sleeper --timeout=120s >/dev/null ||
  die "pod $NS/sleeper did not become Ready: $("${KUBECTL[@]}" -n "$NS" describe pod sleeper | tail -15)"
sleeper_ip="$(pod_field sleeper '{.status.podIP}')"
sched="$(pod_field sleeper '{.status.conditions[?(@.type=="PodScheduled")].lastTransitionTime}')"
readyt="$(pod_field sleeper '{.status.conditions[?(@.type=="Ready")].lastTransitionTime}')"
[[ "$sleeper_ip" == 10.244.0.* ]] || die "pod $NS/sleeper got IP '$sleeper_ip', not one of $POD_CIDR"
# Nothing listens in the pod, so its kernel answers a TCP SYN with a reset:
# curl exit 7 (connection refused) proves the address is reachable, a
# timeout (28) would not. Sent from inside the node's namespace.
rc=0
nexec curl -sS --max-time 5 "http://$sleeper_ip:81/" >/dev/null 2>&1 || rc=$?
[[ $rc == 7 ]] || die "pod $NS/sleeper at $sleeper_ip is not reachable from the node (curl exit $rc, want 7: refused)"
log "pod $NS/sleeper: IP $sleeper_ip reachable from the node; scheduled -> Ready $(seconds_between "$sched" "$readyt")s (apply -> Ready $((SECONDS - t0))s wall)"

if [[ -n "$IMAGE_TAR" ]]; then
  log "importing $IMAGE_TAR"
  image="$(tar -xOf "$IMAGE_TAR" manifest.json | jq -r '.[0].RepoTags[0]')"
  [[ -n "$image" && "$image" != null ]] || die "$IMAGE_TAR names no image (manifest.json RepoTags)"
  "${CTR[@]}" images import "$IMAGE_TAR" >>"$LOGS/ctr-import.log" 2>&1
  log "running $image /worker --version as a restricted pod"
  restricted_pod worker-version "$image" Never '["/worker", "--version"]' | "${KUBECTL[@]}" apply -f - >/dev/null
  t0=$SECONDS
  "${KUBECTL[@]}" -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/worker-version --timeout=120s >/dev/null ||
    die "pod $NS/worker-version did not succeed: $("${KUBECTL[@]}" -n "$NS" describe pod worker-version | tail -15)"
  out="$("${KUBECTL[@]}" -n "$NS" logs worker-version)"
  [[ "$out" == *worker* ]] || die "pod $NS/worker-version printed '$out', not the worker's version"
  sched="$(pod_field worker-version '{.status.conditions[?(@.type=="PodScheduled")].lastTransitionTime}')"
  started="$(pod_field worker-version '{.status.containerStatuses[0].state.terminated.startedAt}')"
  log "pod $NS/worker-version Succeeded: '$out'; scheduled -> running $(seconds_between "$sched" "$started")s (apply -> Succeeded $((SECONDS - t0))s wall)"
fi

# The network rule, checked: the host end of the veth has sent nothing.
tx="$(cat "/sys/class/net/$HOST_VETH/statistics/tx_packets")"
[[ "$tx" == 0 ]] || log "warning: the host sent $tx packets into the node's namespace"
cat >"$CLUSTER_DIR/env" <<EOF
# Written by make cluster: source it to use the cluster from a shell or a test.
export KUBECONFIG=$KUBECONFIG_OUT
export CLUSTER_NETNS=/proc/$H/ns/net
export CLUSTER_MNTNS=/proc/$H/ns/mnt
export CLUSTER_CONTAINERD_SOCK=$CONTAINERD_SOCK
export CLUSTER_NODE_IP=$NODE_IP
EOF
trap - EXIT
log "cluster ready in $((SECONDS - started_at))s"
cat <<EOF

The cluster is running (node $NODE_NAME, pods $POD_CIDR, Services $SERVICE_CIDR), all inside
the node's network namespace; the API server is at https://127.0.0.1:$API_PORT on the host.

  export KUBECONFIG=$KUBECONFIG_OUT     # or: source $CLUSTER_DIR/env
  $K8S_DIR/kubectl get nodes,pods -A

Nothing can be pulled: import images into the node and use imagePullPolicy: Never:
  hack/cluster/exec.sh ctr -a $CONTAINERD_SOCK -n k8s.io images import <docker-archive.tar>
Pod and Service addresses exist only in the node's namespace; run clients there:
  hack/cluster/exec.sh curl http://<pod-ip>:<port>/
Logs: $LOGS.  Stop everything: make cluster-down
EOF
