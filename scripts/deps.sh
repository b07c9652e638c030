#!/usr/bin/env bash
# Installs what building and testing hull needs on Debian 12, as root.
# Idempotent; always refreshes the package lists first.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "deps: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  make gcc libc6-dev flex bison bc libelf-dev libssl-dev cpio kmod xz-utils zstd patch \
  linux-source-6.1 qemu-system-x86 busybox-static runc crun \
  bats shellcheck jq socat curl iproute2 iptables ca-certificates git \
  conmon docker.io containerd containernetworking-plugins \
  podman catatonit netavark \
  debootstrap systemd-container
export PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "deps: Go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "deps: Go 1.22 or newer is needed (Debian 12's golang is too old)" >&2
  fi
  exit 1
fi
# crictl drives containerd's CRI in the tests (not packaged in Debian 12).
if ! command -v crictl >/dev/null 2>&1; then
  GOBIN=/usr/local/bin GOFLAGS='' go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
fi
# containerd 2.x beside Debian's 1.6 for the CRI suites (not packaged in
# Debian 12): built once from the Go module proxy, then cached.
bash "$(dirname "$0")/containerd2.sh" >/dev/null
# The Debian tree systemd.bats boots with systemd-nspawn (this host has no
# systemd as PID 1): debootstrapped once, then cached.
bash "$(dirname "$0")/systemd-rootfs.sh" >/dev/null
# The unprivileged user QEMU runs as (hypervisor.qemu_user).
bash "$(dirname "$0")/qemu-user.sh"
