#!/usr/bin/env bash
# Fetches Debian's generic kernel (linux-image-amd64) and its modules for the
# alternative guest, unpacked under a cache dir keyed by the package version.
# Prints "VMLINUZ MODROOT KVER" on stdout.
#
# usage: fetch-generic-kernel.sh
set -euo pipefail
cache=${HULL_CACHE:-/var/cache/hull}
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "fetch-generic-kernel: cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
kver=${pkg#linux-image-}
dir=$cache/generic-$kver
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir"; mkdir -p "$dir/deb"
  (cd "$dir/deb" && apt-get download -q "$pkg" >&2)
  dpkg -x "$dir"/deb/*.deb "$dir/root"
  depmod -b "$dir/root" "$kver"
  touch "$dir/.done"
fi
echo "$dir/root/boot/vmlinuz-$kver $dir/root $kver"
