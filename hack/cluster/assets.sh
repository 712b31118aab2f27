#!/usr/bin/env bash
# Builds the node binaries of `make cluster` (kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy) from the hack/tools/kube module into
# bin/k8s-<version>/, next to kube-apiserver, etcd and kubectl of
# hack/envtest-assets.sh (which it runs first), and prints that folder. Each
# binary is built only when it is missing; nothing prebuilt is downloaded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
DIR="$("$ROOT/hack/envtest-assets.sh")"

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"

for name in kube-controller-manager kube-scheduler kube-proxy kubelet; do
  out="$DIR/$name"
  [[ -x "$out" ]] && continue
  echo "building $name (cached in $DIR)..." >&2
  (cd "$ROOT/hack/tools/kube" &&
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$out.tmp" "$out"
done
echo "$DIR"
