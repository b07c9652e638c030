#!/usr/bin/env bash
# mkimage.sh ROOTFS NAME OUT.tar CMD... : packs a rootfs dir as a one-layer
# OCI image archive named docker.io/library/NAME:latest, for
# `ctr images import` (no registry needed).
set -euo pipefail
rootfs=$1 name=$2 out=$3; shift 3
cmd=$(jq -n -c '$ARGS.positional' --args -- "$@")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/blobs/sha256"
blob() { # FILE -> prints digest, moves file into blobs
  local sum; sum=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$d/blobs/sha256/$sum"; echo "$sum"
}
tar -C "$rootfs" -cf "$d/layer.tar" .
lsize=$(stat -c %s "$d/layer.tar"); lsum=$(blob "$d/layer.tar")
jq -n -c --arg l "sha256:$lsum" --argjson cmd "$cmd" \
  '{architecture: "amd64", os: "linux", config: {Env: ["PATH=/bin"], Cmd: $cmd}, rootfs: {type: "layers", diff_ids: [$l]}}' > "$d/config.json"
csize=$(stat -c %s "$d/config.json"); csum=$(blob "$d/config.json")
jq -n -c --arg c "sha256:$csum" --argjson cs "$csize" --arg l "sha256:$lsum" --argjson ls "$lsize" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' > "$d/manifest.json"
msize=$(stat -c %s "$d/manifest.json"); msum=$(blob "$d/manifest.json")
jq -n -c --arg m "sha256:$msum" --argjson ms "$msize" --arg n "docker.io/library/$name:latest" \
  '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
    annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": "latest"}}]}' > "$d/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
tar -C "$d" -cf "$out" oci-layout index.json blobs
