#!/usr/bin/env bash
# Builds the Kubernetes test binaries (kube-apiserver, etcd, kubectl) from Go
# modules into bin/k8s-<version>/ and prints that folder. Each binary is built
# only when it is missing, so a warm machine pays nothing; a cold build takes
# about 12 minutes on 2 cores. No prebuilt binary is ever downloaded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
DIR="${ENVTEST_DIR:-$ROOT/bin/k8s-$K8S_VERSION}"
mkdir -p "$DIR"

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"

build() { # build <module dir> <package> <output name>
  local out="$DIR/$3"
  [[ -x "$out" ]] && return 0
  echo "building $3 from $2 (cached in $DIR)..." >&2
  (cd "$ROOT/hack/tools/$1" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$2")
  mv "$out.tmp" "$out"
}

build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build etcd . etcd
# A system kubectl is used only when it is of the same minor version; any
# other is too far from the API server (kubectl supports one minor of skew).
sys_kubectl="$(command -v kubectl 2>/dev/null || true)"
if [[ -n "$sys_kubectl" && -z "${BUILD_KUBECTL:-}" ]] &&
   "$sys_kubectl" version --client -o json 2>/dev/null | grep -q "\"minor\": *\"$minor\""; then
  ln -sfn "$sys_kubectl" "$DIR/kubectl"
else
  [[ -L "$DIR/kubectl" ]] && rm -f "$DIR/kubectl"
  build kube k8s.io/kubernetes/cmd/kubectl kubectl
fi
echo "$DIR"
