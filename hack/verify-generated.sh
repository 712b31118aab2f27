#!/usr/bin/env bash
# Fails when `make generate manifests proto` changes any file: the committed
# generated code (deepcopy, CRDs, protobuf, the Argo CD health checks of
# charts/sync-operator/argocd) must match its sources.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
snapshot() { find api config proto charts -type f -print0 | sort -z | xargs -0 sha256sum; }
before="$(snapshot)"
make --no-print-directory generate manifests proto >/dev/null
after="$(snapshot)"
if [[ "$before" != "$after" ]]; then
  echo "generated files are stale; run 'make generate manifests proto' and commit them:" >&2
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "  " $3}' | sort -u >&2
  exit 1
fi
echo "generated files are up to date"
