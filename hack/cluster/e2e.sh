#!/usr/bin/env bash
# `make cluster-e2e`: the chart, from the image of `make image`, on the real
# node of `make cluster`. Starts a fresh cluster (stopping one that runs),
# imports the image into the node's containerd, builds the test binary of
# test/clustere2e and runs it inside the node's network and mount
# namespaces, where the pod and Service addresses are: it starts PostgreSQL
# and the Armis and NetBox emulators there (on the node's address, which
# pods reach), installs the chart with the project's helm and checks what
# users would see. The cluster is stopped afterwards unless
# CLUSTER_E2E_KEEP=1.
#
# There is no cluster DNS: the gateway Service gets a fixed cluster IP
# (GATEWAY_SERVICE_IP) and the manager writes that address into the workers'
# bootstraps (chart value manager.gatewayAddress). The workers verify the
# gateway by its SPIFFE ID, not by a DNS name, so an IP address is enough.
#
# The first install is of the previous release (hack/cluster/previous.sh:
# its chart and image, built from this repository's history), which the
# test then upgrades to this tree's chart and image with data in place. A
# clone without that commit tests a fresh install only, and says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root cluster-e2e

GATEWAY_SERVICE_IP="${GATEWAY_SERVICE_IP:-10.96.0.50}"
IMAGE_TAR="${CLUSTER_IMAGE_TAR:-$ROOT/bin/image/sync-operator.tar}"
[[ -s "$IMAGE_TAR" ]] || die "$IMAGE_TAR is missing: run 'make image' first (make cluster-e2e does)"
image="$(tar -xOf "$IMAGE_TAR" manifest.json | jq -r '.[0].RepoTags[0]')"
[[ -n "$image" && "$image" != null ]] || die "$IMAGE_TAR names no image (manifest.json RepoTags)"

t0=$SECONDS
if alive "$(holder_pid)"; then
  log "stopping the running cluster: the test starts from a fresh one"
  "$ROOT/hack/cluster/down.sh"
fi
HELM_BIN="$("$ROOT/hack/helm-assets.sh")"
log "building the test binary"
(cd "$ROOT" && go test -c -o "$ROOT/bin/cluster-e2e.test" ./test/clustere2e)

prev_rc=0
PREVIOUS="$("$ROOT/hack/cluster/previous.sh")" || prev_rc=$?
case "$prev_rc" in
  0) previous_image="$(tar -xOf "$PREVIOUS/sync-operator.tar" manifest.json | jq -r '.[0].RepoTags[0]')" ;;
  3) log "WARNING: the upgrade from the previous release is NOT tested: its commit is not in this clone"
     PREVIOUS="" previous_image="" ;;
  *) die "building the previous release failed (exit $prev_rc)" ;;
esac

CLUSTER_IMAGE_TAR="$IMAGE_TAR" "$ROOT/hack/cluster/up.sh"
up_s=$((SECONDS - t0))
if [[ "${CLUSTER_E2E_KEEP:-}" != 1 ]]; then
  trap '"$ROOT/hack/cluster/down.sh"' EXIT
fi
if [[ -n "$PREVIOUS" ]]; then
  log "importing the previous release's image $previous_image"
  nexec ctr --address="$CONTAINERD_SOCK" --namespace=k8s.io images import "$PREVIOUS/sync-operator.tar" >>"$LOGS/ctr-import.log" 2>&1
fi

log "running the cluster test inside the node's namespace (image $image)"
t1=$SECONDS
rc=0
KUBECONFIG="$KUBECONFIG_OUT" SYNC_CLUSTER_E2E=1 SYNC_CLUSTER_HELM="$HELM_BIN" SYNC_CLUSTER_IMAGE="$image" \
  SYNC_CLUSTER_NODE_IP="$NODE_IP" SYNC_CLUSTER_POD_CIDR="$POD_CIDR" SYNC_CLUSTER_GATEWAY_IP="$GATEWAY_SERVICE_IP" \
  SYNC_CLUSTER_PREVIOUS_CHART="${PREVIOUS:+$PREVIOUS/chart}" SYNC_CLUSTER_PREVIOUS_IMAGE="$previous_image" \
  nexec "$ROOT/bin/cluster-e2e.test" -test.v -test.count=1 -test.timeout=30m ${CLUSTER_E2E_FLAGS:-} || rc=$?
if ((rc != 0)); then
  log "the cluster test failed (exit $rc); node logs are in $LOGS"
  exit "$rc"
fi
log "cluster-e2e passed: cluster up ${up_s}s, test $((SECONDS - t1))s, total $((SECONDS - t0))s"
