#!/usr/bin/env bash
# Builds spire-server and spire-agent (pinned in hack/tools/spire) from Go
# modules into bin/spire-<version>/ and prints that folder. Each is built only
# when missing: about 9 minutes cold on 2 cores, nothing warm. cgo is on for
# SPIRE's sqlite datastore.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="$(awk '$1=="github.com/spiffe/spire"{print $2}' "$ROOT/hack/tools/spire/go.mod")"
DIR="${SPIRE_DIR:-$ROOT/bin/spire-$VERSION}"
mkdir -p "$DIR"
for cmd in spire-server spire-agent; do
  [[ -x "$DIR/$cmd" ]] && continue
  echo "building $cmd $VERSION (cached in $DIR)..." >&2
  (cd "$ROOT/hack/tools/spire" && CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o "$DIR/$cmd.tmp" "github.com/spiffe/spire/cmd/$cmd")
  mv "$DIR/$cmd.tmp" "$DIR/$cmd"
done
echo "$DIR"
