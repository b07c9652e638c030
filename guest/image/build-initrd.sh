#!/usr/bin/env bash
# Builds the guest initrd: the static hull-agent as /init, runc and the
# libraries it links, and (for a modular distro kernel) the kernel modules
# the agent loads, listed in dependency order in /lib/modules/load.
# Timestamps and ordering are fixed so the same inputs give the same bytes.
# The archive is left uncompressed: under TCG, inflating it cost the guest
# ~0.3 s of a ~3 s boot, far more than copying the larger image.
#
# With GUEST_ROOT_OUT set, the same tree is also written there as a
# directory: the guest root hull shares read-only over 9p.
#
# usage: build-initrd.sh AGENT OUT [MODROOT KVER]
set -euo pipefail
agent=${1:?usage: build-initrd.sh AGENT OUT [MODROOT KVER]}
out=${2:?usage: build-initrd.sh AGENT OUT [MODROOT KVER]}
modroot=${3:-}
kver=${4:-}
# The OCI runtime the agent drives in the guest: crun (C, small, starts
# containers far faster than runc's Go under TCG) unless GUEST_RUNTIME says
# runc. The agent uses whichever the image carries.
guest_runtime=${GUEST_RUNTIME:-crun}
runc=$(command -v "$guest_runtime" || true)
[ -n "$runc" ] || { echo "build-initrd: $guest_runtime not found (apt-get install $guest_runtime)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{proc,sys,dev,run,tmp,etc,usr/bin,lib/modules}
install -m 0755 "$agent" "$stage/init"
install -m 0755 "$runc" "$stage/usr/bin/$guest_runtime"
# It is dynamically linked (libseccomp...): copy the loader and each library.
ldd "$runc" | awk '/=>/ {print $3} /^\t\// {print $1}' | while read -r lib; do
  [ -f "$lib" ] || continue
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
if [ -d /lib64 ] && [ ! -e "$stage/lib64" ]; then ln -s lib "$stage/lib64"; fi
echo "root:x:0:0:root:/:/bin/sh" > "$stage/etc/passwd"
# `hull check` compares this with its own version.
echo "${HULL_VERSION:-dev}" > "$stage/etc/hull-version"
echo "root:x:0:" > "$stage/etc/group"

if [ -n "$modroot" ]; then
  # Modules the agent needs, in the order modprobe would load them.
  mods="virtio_pci virtio_mmio virtio_console virtio_rng 9pnet_virtio 9p virtio_net vmw_vsock_virtio_transport overlay fuse virtiofs"
  : > "$stage/lib/modules/load"
  for m in $mods; do
    modprobe -d "$modroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    dest=/lib/modules/$(basename "$ko")
    case "$ko" in
      *.xz) xz -dc "$ko" > "$stage${dest%.xz}"; dest=${dest%.xz} ;;
      *.zst) zstd -qdc "$ko" > "$stage${dest%.zst}"; dest=${dest%.zst} ;;
      *) cp "$ko" "$stage$dest" ;;
    esac
    echo "$dest" >> "$stage/lib/modules/load"
  done
fi

find "$stage" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initrd: $out ($(du -h "$out" | cut -f1))"
if [ -n "${GUEST_ROOT_OUT:-}" ]; then
  rm -rf "$GUEST_ROOT_OUT.tmp"
  cp -a "$stage" "$GUEST_ROOT_OUT.tmp"
  chmod 0755 "$GUEST_ROOT_OUT.tmp"
  rm -rf "$GUEST_ROOT_OUT" && mv "$GUEST_ROOT_OUT.tmp" "$GUEST_ROOT_OUT"
  echo "build-initrd: $GUEST_ROOT_OUT ($(du -sh "$GUEST_ROOT_OUT" | cut -f1))"
fi
