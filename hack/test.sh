#!/usr/bin/env bash
# Runs every test against real services: the Kubernetes binaries and SPIRE
# built from Go modules (hack/envtest-assets.sh, hack/spire-assets.sh), helm and
# promtool (hack/helm-assets.sh, hack/promtool-assets.sh) and one
# throwaway PostgreSQL server (hack/postgres.sh) shared by the run, each test
# in its own database.
# Extra `go test` flags can be passed in GOTESTFLAGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ASSETS="$("$ROOT/hack/envtest-assets.sh")"
export TEST_ASSET_KUBE_APISERVER="$ASSETS/kube-apiserver"
export TEST_ASSET_ETCD="$ASSETS/etcd"
export TEST_ASSET_KUBECTL="$ASSETS/kubectl"

# helm, built from its Go module, for the chart tests (test/helmtest); required here.
"$ROOT/hack/helm-assets.sh" >/dev/null
export SYNC_TEST_REQUIRE_HELM=1

# promtool, built from the Prometheus Go module, for the chart's alerting rule
# tests (test/helmtest: promtool test rules); required here.
"$ROOT/hack/promtool-assets.sh" >/dev/null
export SYNC_TEST_REQUIRE_PROMTOOL=1

SPIRE="$("$ROOT/hack/spire-assets.sh")"
export SPIRE_SERVER_BIN="$SPIRE/spire-server"
export SPIRE_AGENT_BIN="$SPIRE/spire-agent"

PGDIR="$(mktemp -d /tmp/sync-pg.XXXXXX)"
trap '"$ROOT/hack/postgres.sh" stop "$PGDIR"' EXIT
SYNC_TEST_POSTGRES_DSN="$("$ROOT/hack/postgres.sh" start "$PGDIR")"
export SYNC_TEST_POSTGRES_DSN

# shellcheck disable=SC2086
go test -race -count=1 ${GOTESTFLAGS:-} ./...

# The identity parsers are fuzzed briefly on every run; `make fuzz` runs longer.
# The budget is a count of executions (about 5 s here), not a duration: with
# a duration, Go before 1.27 can fail a clean run with "context deadline
# exceeded" when the deadline meets a busy worker (go.dev/issue/75804).
for target in FuzzClassifyCommonName FuzzClassifySPIFFEID; do
  go test -run='^$' -fuzz="$target" -fuzztime="${FUZZTIME:-120000x}" ./identity/
done
