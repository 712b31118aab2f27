#!/usr/bin/env bash
# Builds the previous release point for the upgrade test of `make
# cluster-e2e`: the commit named in hack/cluster/previous-release (bump it
# to the commit of each release). Its tree is taken from this repository's
# history with `git archive`, its image assembled by its own `make image`
# (tagged previous-<commit>) and its chart copied; both are cached under
# bin/previous/<commit>/ and built only when missing.
#
# Prints the directory (holding sync-operator.tar and chart/) on stdout.
# Exits 3, printing nothing, when the commit is not in this clone's history
# (a shallow clone): the caller then tests a fresh install only, and says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ref="$(tr -d '[:space:]' <"$ROOT/hack/cluster/previous-release")"
[[ "$ref" =~ ^[0-9a-f]{40}$ ]] || die "hack/cluster/previous-release must hold one full commit hash, not '$ref'"
out="$ROOT/bin/previous/$ref"
if [[ -s "$out/sync-operator.tar" && -f "$out/chart/Chart.yaml" ]]; then
  echo "$out"
  exit 0
fi
if ! git -C "$ROOT" cat-file -e "$ref^{commit}" 2>/dev/null; then
  log "the previous release $ref is not in this clone's history (shallow clone?)"
  exit 3
fi
short="${ref:0:12}"
log "building the previous release $short (image and chart) into $out"
tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/src"
git -C "$ROOT" archive "$ref" | tar -x -C "$tmp/src"
make -C "$tmp/src" --no-print-directory image VERSION="previous-$short" COMMIT="$short" IMAGE_DIR="$tmp/image" >&2
mv "$tmp/image/sync-operator.tar" "$tmp/sync-operator.tar"
cp -r "$tmp/src/charts/sync-operator" "$tmp/chart"
rm -rf "$tmp/src" "$tmp/image"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
