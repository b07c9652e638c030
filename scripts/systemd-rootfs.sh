#!/usr/bin/env bash
# Builds the Debian 12 tree that tests/integration/systemd.bats boots with
# systemd-nspawn: systemd as PID 1 with its system bus (this host has no
# systemd), QEMU and conmon for hull to run inside, and hull's QEMU user.
# Cached under $HULL_CACHE by version (bump it when the tree changes), so
# only the first run pays debootstrap (about a minute through the Debian
# mirror). The tree is
# built in a temporary directory renamed into place once complete: an
# interrupted build is never taken for a cached one. The suite boots it with
# a volatile overlay, so the cached tree stays as built.
#
# usage: systemd-rootfs.sh   (prints the tree's directory)
set -euo pipefail
# shellcheck source=scripts/cache.bash
source "$(dirname "$0")/cache.bash"
[ "$(id -u)" = 0 ] || { echo "systemd-rootfs: run as root" >&2; exit 1; }
cache=${HULL_CACHE:-/var/cache/hull}
mirror=${HULL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,dbus,systemd-sysv,qemu-system-x86,conmon
version=2
dir=$cache/systemd-bookworm-v$version

complete() {
  [ -x "$1/lib/systemd/systemd" ] && [ -x "$1/usr/bin/qemu-system-x86_64" ] && [ -x "$1/usr/bin/conmon" ] &&
    grep -q '^hull-qemu:' "$1/etc/passwd" && [ -s "$1/etc/hosts" ]
}

if complete "$dir"; then
  echo "$dir"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "systemd-rootfs: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "systemd-rootfs: debootstrap bookworm ($packages) into $dir" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" >&2
# hull's default configuration runs QEMU as this user (scripts/qemu-user.sh).
chroot "$tmp" useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hull-qemu
# minbase writes no /etc/hosts; containerd's CRI copies it into each pod.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$tmp/etc/hosts"
# Nothing to log in to; the suite enters the container with nsenter.
chroot "$tmp" systemctl mask console-getty.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
cache_commit systemd-rootfs "$tmp" "$dir"
echo "$dir"
