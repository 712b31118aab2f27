#!/usr/bin/env bash
# Builds the pod sandbox ("pause") image of `make cluster` from pause.c of the
# k8s.io/kubernetes module pinned by hack/tools/kube (gcc -static, as the
# upstream image is built), as a docker-archive tarball for
# `ctr images import`: one layer holding /pause, entrypoint /pause, user
# 65535:65535 like registry.k8s.io/pause. Built once into
# bin/k8s-<version>/pause-<tag>.tar; files carry fixed owners and times, so
# the same binary gives the same image. Prints the tarball's path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -s "$PAUSE_TAR" ]] && { echo "$PAUSE_TAR"; exit 0; }
command -v gcc >/dev/null || die "gcc is needed to build the pause image (apt-get install gcc libc6-dev)"

src="$(cd "$ROOT/hack/tools/kube" && go mod download -json k8s.io/kubernetes | jq -r .Dir)/build/pause/linux/pause.c"
[[ -r "$src" ]] || die "pause.c not found at $src"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/image"
log "building the pause image from $src"
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-sync-cluster" -o "$work/rootfs/pause" "$src"
strip "$work/rootfs/pause"

tar_fixed() { # tar_fixed OUT DIR FILES...: a tar with fixed owners, times and order
  local out="$1" dir="$2"
  shift 2
  tar --create --file="$out" --directory="$dir" --sort=name --mtime=@0 \
    --owner=0 --group=0 --numeric-owner --format=ustar "$@"
}
tar_fixed "$work/layer.tar" "$work/rootfs" pause
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
layer_dir="${diff_id#sha256:}"
mkdir -p "$work/image/$layer_dir"
mv "$work/layer.tar" "$work/image/$layer_dir/layer.tar"
jq -cn --arg diff "$diff_id" --arg v "$PAUSE_VERSION" '{
  architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
  config: {User: "65535:65535", Entrypoint: ["/pause"], WorkingDir: "/",
           Labels: {"org.opencontainers.image.title": "pause", "org.opencontainers.image.version": $v}},
  rootfs: {type: "layers", diff_ids: [$diff]},
  history: [{created: "1970-01-01T00:00:00Z", created_by: "gcc -static pause.c (hack/cluster/pause-image.sh)"}]
}' >"$work/config.json"
config="$(sha256sum "$work/config.json" | cut -d' ' -f1).json"
mv "$work/config.json" "$work/image/$config"
jq -cn --arg c "$config" --arg tag "$PAUSE_IMAGE" --arg l "$layer_dir/layer.tar" \
  '[{Config: $c, RepoTags: [$tag], Layers: [$l]}]' >"$work/image/manifest.json"
mkdir -p "$(dirname "$PAUSE_TAR")"
tar_fixed "$PAUSE_TAR.tmp" "$work/image" manifest.json "$config" "$layer_dir"
mv "$PAUSE_TAR.tmp" "$PAUSE_TAR"
echo "$PAUSE_TAR"
