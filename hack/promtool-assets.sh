#!/usr/bin/env bash
# Builds promtool from the Prometheus Go module pinned in hack/tools/promtool
# into bin/promtool and prints its path. It is built only when missing, so a
# warm machine pays nothing; a cold build takes several minutes on 2 cores.
# No prebuilt binary is ever downloaded. test/helmtest runs it on the chart's
# PrometheusRule (promtool test rules).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PROMTOOL_BIN:-$ROOT/bin/promtool}"
mkdir -p "$(dirname "$OUT")"

if [[ ! -x "$OUT" ]]; then
  version="$(cd "$ROOT/hack/tools/promtool" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
  echo "building promtool $version from github.com/prometheus/prometheus (cached in $OUT)..." >&2
  (cd "$ROOT/hack/tools/promtool" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
    -o "$OUT.tmp" github.com/prometheus/prometheus/cmd/promtool)
  mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
