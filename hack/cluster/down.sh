#!/usr/bin/env bash
# `make cluster-down`: stops what hack/cluster/up.sh started and restores the
# machine. Processes are stopped by their recorded PIDs (each checked to be
# the one started: same mount namespace, or for the host-side forwarder the
# same executable), in reverse start order; then the containers (the
# processes of the kubelet's pod cgroups) and whatever else still runs in the
# node's namespaces (containerd shims). When the holder ends, the network
# namespace, the veth pair and every mount of the node go with it. Then the
# pod cgroups are removed, the kernel settings the kubelet changed are
# restored, the host folders created as mount points are removed, and so is
# the cluster's state (bin/cluster, except its logs). Safe to run twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root cluster-down

if [[ ! -d "$RUN" ]]; then
  log "no cluster state in $CLUSTER_DIR; nothing to stop"
  exit 0
fi
mntns="$(cat "$RUN/mntns" 2>/dev/null || true)"
netns="$(cat "$RUN/netns" 2>/dev/null || true)"
holder="$(holder_pid)"

# ours PID: the process runs in the node's namespaces (so it is one this
# cluster started: nothing else enters them).
ours() {
  local pid="$1" m n
  alive "$pid" || return 1
  m="$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" || return 1
  n="$(readlink "/proc/$pid/ns/net" 2>/dev/null)" || return 1
  [[ (-n "$mntns" && "$m" == "$mntns") || (-n "$netns" && "$n" == "$netns") ]]
}

# stop PID: SIGTERM, up to 15 s to exit, then SIGKILL.
stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "warning: PID $pid did not exit"
}

# stop_component NAME: stop the recorded process of NAME if it is ours.
stop_component() {
  local name="$1" pid
  pid="$(cat "$RUN/$name.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || return 0
  if [[ "$name" == apiforward ]]; then
    # The forwarder runs in the host's namespaces: check its executable.
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */cluster-apiforward ]] || return 0
  else
    ours "$pid" || return 0
  fi
  log "stopping $name (PID $pid)"
  stop_pid "$pid"
}

# cgroup_dirs: the pod cgroup trees the kubelet made at the root of each
# hierarchy.
cgroup_dirs() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] && echo "$d"
  done
  return 0
}

# kill_pod_processes: SIGKILL every process in the pod cgroups (containers,
# which run in namespaces of their own).
kill_pod_processes() {
  local d pids
  for d in $(cgroup_dirs); do
    # Cgroups vanish while this reads them: a failing find is expected.
    pids="$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un || true)"
    [[ -n "$pids" ]] || continue
    log "killing container processes in $d: $(echo "$pids" | wc -l)"
    # shellcheck disable=SC2086 # one PID per word
    kill -KILL $pids 2>/dev/null || true
  done
}

# kill_namespace_processes [all]: SIGKILL whatever else runs in the node's
# namespaces (containerd shims, stray helpers), except the holder and, unless
# "all", the components still to be stopped in order.
kill_namespace_processes() {
  local p pid found=() keep=" $holder $$ "
  [[ "${1:-}" == all ]] || keep+="$(cat "$RUN"/*.pid 2>/dev/null | tr '\n' ' ') "
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "$keep" == *" $pid "* ]] && continue
    ours "$pid" && found+=("$pid")
  done
  ((${#found[@]} == 0)) && return 0
  log "killing ${#found[@]} remaining processes of the node: ${found[*]}"
  kill -KILL "${found[@]}" 2>/dev/null || true
  for pid in "${found[@]}"; do
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
  done
}

# The node first (no new containers), then the containers, the runtime and
# its shims, the control plane and the forwarder, and last the holder.
for ((c = ${#COMPONENTS[@]} - 1; c >= 0; c--)); do
  name="${COMPONENTS[c]}"
  stop_component "$name"
  if [[ "$name" == kubelet ]]; then kill_pod_processes; fi
  if [[ "$name" == containerd ]]; then kill_namespace_processes; fi
done
kill_pod_processes
kill_namespace_processes all
if [[ -n "$holder" ]] && ours "$holder"; then
  log "ending the node's namespaces (holder PID $holder)"
  stop_pid "$holder"
fi

# The host end of the veth goes with the namespace; remove it if it stayed.
for ((i = 0; i < 50; i++)); do
  [[ -e "/sys/class/net/$HOST_VETH" ]] || break
  sleep 0.1
done
if [[ -e "/sys/class/net/$HOST_VETH" ]]; then
  log "removing $HOST_VETH"
  ip link del "$HOST_VETH" || true
fi

# Pod cgroups: innermost first; a cgroup can be removed once its last
# process has exited, which can trail the kill by a moment.
for ((i = 0; i < 50; i++)); do
  left="$(cgroup_dirs)"
  [[ -z "$left" ]] && break
  for d in $left; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  sleep 0.2
done
if [[ -n "$(cgroup_dirs)" ]]; then
  log "warning: could not remove the pod cgroups: $(cgroup_dirs | tr '\n' ' ')"
  kill_pod_processes
fi

if [[ -s "$RUN/sysctls" ]]; then
  log "restoring $(tr '\n' ' ' <"$RUN/sysctls")"
  while IFS= read -r kv; do sysctl -qw "$kv" || log "warning: could not restore $kv"; done <"$RUN/sysctls"
fi
if [[ -s "$RUN/created-dirs" ]]; then
  while IFS= read -r d; do rmdir "$d" 2>/dev/null || log "warning: $d is not empty; left in place"; done <"$RUN/created-dirs"
fi

rm -rf "$STATE" "$CONF" "$PKI" "$KUBECONFIG_OUT" "$CLUSTER_DIR/env" "$RUN"
log "cluster stopped; logs kept in $LOGS"
