#!/usr/bin/env bash
# Runs a command inside the network and mount namespaces of the node that
# `make cluster` started, where the pod (10.244.0.0/24) and Service
# (10.96.0.0/12) addresses, containerd's socket and the node's mounts are:
#
#   hack/cluster/exec.sh curl -s http://10.244.0.5:8080/
#   hack/cluster/exec.sh ctr -a /run/containerd/containerd.sock -n k8s.io images ls
#
# (nsenter, not `ip netns exec`, which remounts /sys and hides the cgroups.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root cluster
(($# > 0)) || die "usage: $0 COMMAND [ARG...]"
nexec "$@"
