#!/usr/bin/env bash
# Runs every test against real services: the Kubernetes binaries built from Go
# modules (hack/envtest-assets.sh) and one throwaway PostgreSQL server
# (hack/postgres.sh) shared by the run, each test in its own database.
# Extra `go test` flags can be passed in GOTESTFLAGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ASSETS="$("$ROOT/hack/envtest-assets.sh")"
export TEST_ASSET_KUBE_APISERVER="$ASSETS/kube-apiserver"
export TEST_ASSET_ETCD="$ASSETS/etcd"
export TEST_ASSET_KUBECTL="$ASSETS/kubectl"

PGDIR="$(mktemp -d /tmp/sync-pg.XXXXXX)"
trap '"$ROOT/hack/postgres.sh" stop "$PGDIR"' EXIT
SYNC_TEST_POSTGRES_DSN="$("$ROOT/hack/postgres.sh" start "$PGDIR")"
export SYNC_TEST_POSTGRES_DSN

# shellcheck disable=SC2086
go test -count=1 ${GOTESTFLAGS:-} ./...
