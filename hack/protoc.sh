#!/usr/bin/env bash
# Regenerates the Go code of proto/monitoring.proto. protoc comes from the
# Debian package protobuf-compiler (installed when missing); the Go plugins are
# built from the versions pinned in hack/tools/dev into bin/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v protoc >/dev/null 2>&1; then
  echo "protoc not found; installing Debian's protobuf-compiler" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
cd "$ROOT"
PATH="$ROOT/bin:$PATH" protoc -I proto \
  --go_out=. --go_opt=module=github.com/serviceradar/sync-operator \
  --go-grpc_out=. --go-grpc_opt=module=github.com/serviceradar/sync-operator \
  proto/monitoring.proto
# The protoc version line depends on the Debian package's patch level, not on
# the contract; drop it so regeneration is stable across machines.
sed -i -E '/^\/\/ (\t|- )protoc +v?[0-9]/d' proto/monitoring.pb.go proto/monitoring_grpc.pb.go
