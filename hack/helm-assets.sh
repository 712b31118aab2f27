#!/usr/bin/env bash
# Builds helm from the Go module pinned in hack/tools/helm into bin/helm and
# prints its path. It is built only when missing, so a warm machine pays
# nothing; a cold build takes a few minutes on 2 cores. No prebuilt binary is
# ever downloaded. test/helmtest runs this binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${HELM_BIN:-$ROOT/bin/helm}"
mkdir -p "$(dirname "$OUT")"

if [[ ! -x "$OUT" ]]; then
  version="$(cd "$ROOT/hack/tools/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)"
  # Helm's default Kubernetes version (helm template, helm lint) is that of its
  # client-go, stamped as helm's own Makefile does: client-go v0.37.x -> 1.37.
  k8s_minor="$(cd "$ROOT/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  k8s_minor="${k8s_minor#v0.}"; k8s_minor="${k8s_minor%%.*}"
  echo "building helm $version from helm.sh/helm/v3 (cached in $OUT)..." >&2
  (cd "$ROOT/hack/tools/helm" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
    -o "$OUT.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
