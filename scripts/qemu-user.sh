#!/usr/bin/env bash
# Creates the unprivileged user QEMU switches to once it has opened its
# files (hypervisor.qemu_user, "hull-qemu" by default). Idempotent.
set -euo pipefail
user=${1:-hull-qemu}
[ "$(id -u)" = 0 ] || { echo "qemu-user: run as root" >&2; exit 1; }
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
fi
