# Shared settings and helpers of hack/cluster/up.sh and hack/cluster/down.sh.
# Sourced, not run.
#
# The node lives in a network and mount namespace of its own, held by one
# process (the "holder", `sleep infinity` under `unshare --net --mount`):
#   - network: every address of the cluster (node 10.213.0.2/30 on the
#     namespace end of a veth pair, pods 10.244.0.0/24 on the cni0 bridge,
#     Services 10.96.0.0/12) exists only there. The host end of the veth
#     carries no address, so the host's namespace has no route to any of
#     them and never sends them a packet. The namespace has no default
#     route, so nothing in it reaches beyond the machine either. The API
#     server is reached from the host through a loopback forwarder
#     (127.0.0.1:$API_PORT in the host -> 127.0.0.1:$API_PORT in the namespace).
#   - mount: a private copy of the host's mounts with / made rshared (for
#     Bidirectional hostPath volumes) and a tmpfs on /run. Every mount the
#     kubelet, containerd and runc make stays in it and disappears with it;
#     the host's mount table is never touched.
# Every process is started detached with its PID recorded, and stopped by
# that PID.

# shellcheck disable=SC2034 # variables are used by the scripts that source this file

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
K8S_DIR="${ENVTEST_DIR:-$ROOT/bin/k8s-$K8S_VERSION}"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/bin/cluster}"
PKI="$CLUSTER_DIR/pki"
CONF="$CLUSTER_DIR/conf"
LOGS="$CLUSTER_DIR/logs"
RUN="$CLUSTER_DIR/run"     # PIDs, saved sysctls, markers: what cluster-down needs
STATE="$CLUSTER_DIR/state" # etcd, containerd, kubelet data; removed by cluster-down
KUBECONFIG_OUT="$CLUSTER_DIR/kubeconfig"

NODE_NAME="${CLUSTER_NODE_NAME:-sync-node}"
NODE_IP=10.213.0.2
NODE_PREFIX=30
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/12
SERVICE_IP=10.96.0.1 # the kubernetes Service
API_PORT="${CLUSTER_API_PORT:-6443}"
HOST_VETH=sc-host0
PAUSE_VERSION=3.10.2
PAUSE_IMAGE="localhost/sync-cluster/pause:$PAUSE_VERSION"
PAUSE_TAR="$K8S_DIR/pause-$PAUSE_VERSION.tar"
CONTAINERD_SOCK=/run/containerd/containerd.sock # inside the node's mount namespace
CNI_BIN_DIR=/usr/lib/cni                        # Debian's containernetworking-plugins

# The node's standard data folders. Some are fixed in the kubelet and CNI
# whatever their configuration says (/var/log/containers, the device plugin
# socket under /var/lib/kubelet, the CNI result cache), so the holder
# bind-mounts a folder of $STATE/bind over each, in the node's mount
# namespace only: nothing lands on the host. A path missing on the host is
# created as the mount point and recorded, and removed by cluster-down.
HOST_BIND_DIRS=(/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni)

# Sysctls the kubelet sets on start (container_manager_linux.go
# setupKernelTunables), saved before and restored by cluster-down.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Components in start order; cluster-down stops them in reverse.
COMPONENTS=(etcd kube-apiserver apiforward kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
  [[ "$(id -u)" == 0 ]] || die "must run as root (it creates network and mount namespaces, cgroups and a veth pair, and runs containerd and the kubelet): sudo make ${1:-cluster}"
}

holder_pid() { cat "$RUN/holder.pid" 2>/dev/null || true; }

# alive PID: the process exists and is not a zombie.
alive() {
  local pid="$1" state
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# nexec CMD...: run CMD in the node's network and mount namespaces.
nexec() {
  local h
  h="$(holder_pid)"
  alive "$h" || die "the node namespace holder is not running (make cluster first)"
  nsenter --mount="/proc/$h/ns/mnt" --net="/proc/$h/ns/net" --wd="$PWD" -- "$@"
}

# wait_for DESCRIPTION SECONDS CMD...: run CMD every second until it succeeds,
# for at most SECONDS; fails with DESCRIPTION and the last output.
wait_for() {
  local what="$1" limit="$2" i out
  shift 2
  for ((i = 0; i < limit; i++)); do
    if out="$("$@" 2>&1)"; then return 0; fi
    sleep 1
  done
  log "timed out after ${limit}s waiting for $what; last output:"
  printf '%s\n' "$out" | tail -5 >&2
  return 1
}
