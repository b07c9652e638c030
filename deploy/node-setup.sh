#!/usr/bin/env bash
# Sets a node up for the hull RuntimeClass: installs hull (binaries, guest,
# configuration) from this checkout and configures whichever of CRI-O and
# containerd is present. Idempotent: running it twice changes nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "node-setup: run as root" >&2; exit 1; }
make install
mkdir -p /etc/hull
[ -f /etc/hull/configuration.toml ] || install -m 0644 configuration.toml /etc/hull/configuration.toml
if [ -d /etc/crio ]; then
  install -D -m 0644 deploy/crio-hull.conf /etc/crio/crio.conf.d/50-hull.conf
  echo "node-setup: CRI-O configured; restart crio to load the hull handler"
fi
if [ -f /etc/containerd/config.toml ]; then
  # containerd merges imported files into its config: no editing of tables.
  install -D -m 0644 deploy/containerd-hull.toml /etc/containerd/conf.d/hull.toml
  if ! grep -q '^imports' /etc/containerd/config.toml; then
    sed -i '1i imports = ["/etc/containerd/conf.d/*.toml"]' /etc/containerd/config.toml
  elif ! grep -q 'conf.d/\*.toml\|conf.d/hull.toml' /etc/containerd/config.toml; then
    echo "node-setup: add /etc/containerd/conf.d/hull.toml to the imports of /etc/containerd/config.toml" >&2
    exit 1
  fi
  echo "node-setup: containerd configured; restart containerd to load the hull handler"
fi
hull check
echo "node-setup: now kubectl apply -f deploy/runtimeclass.yaml"
