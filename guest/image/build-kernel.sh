#!/usr/bin/env bash
# Builds hull's tuned guest kernel from Debian's linux-source-6.1:
# tinyconfig + kernel.config. The result is cached by the hash of the config
# and the source package version, so a rebuild with nothing changed is a copy.
#
# Besides the bzImage it writes the stripped ELF vmlinux: QEMU boots it
# directly through its PVH entry point, with no decompression (XZ under TCG
# costs a good part of a second).
#
# The patches under patches/ are applied in order (see each one's header for
# why); they are part of the cache key.
#
# usage: build-kernel.sh OUT_BZIMAGE OUT_VMLINUX
set -euo pipefail
out=${1:?usage: build-kernel.sh OUT_BZIMAGE OUT_VMLINUX}
outelf=${2:?usage: build-kernel.sh OUT_BZIMAGE OUT_VMLINUX}
# The build runs in the source tree: make the outputs absolute first.
out=$(realpath -m "$out")
outelf=$(realpath -m "$outelf")
here=$(cd "$(dirname "$0")" && pwd)
cache=${HULL_CACHE:-/var/cache/hull}
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "build-kernel: $tarball missing (apt-get install linux-source-6.1)" >&2; exit 1; }

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
mapfile -t patches < <(find "$here/patches" -name '*.patch' | sort)
patchkey=$(cat /dev/null "${patches[@]}" | sha256sum | cut -c1-16)
key=$( (cat "$here/kernel.config"; echo "$srcver"; echo "$patchkey") | sha256sum | cut -c1-16)
cached=$cache/kernel-$key/bzImage
cachedelf=$cache/kernel-$key/vmlinux
if [ -f "$cached" ] && [ -f "$cachedelf" ]; then
  install -D -m 0644 "$cached" "$out"
  install -D -m 0644 "$cachedelf" "$outelf"
  echo "build-kernel: cached $cached"
  exit 0
fi

work=$cache/kernel-src
# The tree is reused across config changes (an incremental build), but a new
# source version or patch set starts from a clean unpack.
if [ ! -f "$work/.unpacked-$srcver-$patchkey" ]; then
  rm -rf "$work"; mkdir -p "$work"
  tar -C "$work" --strip-components=1 -xf "$tarball"
  for p in "${patches[@]}"; do
    patch -d "$work" -p1 --quiet --forward < "$p" || { echo "build-kernel: $p does not apply" >&2; exit 1; }
  done
  touch "$work/.unpacked-$srcver-$patchkey"
fi
cd "$work"
make -s tinyconfig
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >/dev/null
make -s olddefconfig
# Fail when a requested option did not survive dependency resolution.
missing=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qx "$line" .config || { echo "build-kernel: $line did not stick" >&2; missing=1; } ;;
  esac
done < "$here/kernel.config"
[ "$missing" = 0 ] || exit 1
make -s -j"$(nproc)" bzImage
mkdir -p "$(dirname "$cached")"
cp .config "$(dirname "$cached")/config"
strip --strip-all -o "$cachedelf.tmp" vmlinux && mv "$cachedelf.tmp" "$cachedelf"
cp arch/x86/boot/bzImage "$cached.tmp" && mv "$cached.tmp" "$cached"
install -D -m 0644 "$cached" "$out"
install -D -m 0644 "$cachedelf" "$outelf"
echo "build-kernel: built $cached"
