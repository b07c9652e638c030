#!/usr/bin/env bash
# Sets a node up for the hull RuntimeClass: installs hull (binaries, guest,
# configuration) from this checkout and configures whichever of CRI-O and
# containerd is present. Idempotent: running it twice changes nothing more.
#
# usage: node-setup.sh [--containerd-handler runc-shim|shim]
#   shim       hull's own shim, containerd-shim-hull-v2
#              (io.containerd.hull.v2; the default)
#   runc-shim  containerd's runc v2 shim runs hull as its BinaryName
# Either is the containerd handler `hull`; README, "With containerd", says
# which to choose. CRI-O has only the first kind (conmon runs hull).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '/^# usage:/,/^set /{/^set /d; s/^# \{0,1\}//; p}' "$0" >&2; exit 2; }
handler=shim
while [ $# -gt 0 ]; do
  case $1 in
    --containerd-handler) [ $# -ge 2 ] || usage; handler=$2; shift 2 ;;
    --containerd-handler=*) handler=${1#*=}; shift ;;
    *) usage ;;
  esac
done
case $handler in
  runc-shim) snippet=deploy/containerd-hull ;;
  shim) snippet=deploy/containerd-hull-shim ;;
  *) usage ;;
esac
[ "$(id -u)" = 0 ] || { echo "node-setup: run as root" >&2; exit 1; }

# The node's cgroup driver, and why: the kubelet's, when its config names
# one; else systemd where systemd is PID 1 (kubeadm's default, and CRI-O's);
# else cgroupfs. CRI-O's conmon passes hull --systemd-cgroup by CRI-O's own
# cgroup_manager, and containerd writes a systemd-form cgroupsPath for the
# kubelet's .slice parents, which the shim follows; only containerd's runc
# shim must be told (SystemdCgroup).
driver=cgroupfs why="systemd is not PID 1"
kubelet_config=/var/lib/kubelet/config.yaml
if [ -f "$kubelet_config" ] && grep -q '^cgroupDriver:' "$kubelet_config"; then
  driver=$(sed -n 's/^cgroupDriver: *"\{0,1\}\([a-z]*\).*/\1/p' "$kubelet_config" | head -n1)
  why="the kubelet's $kubelet_config says so"
elif [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  driver=systemd why="systemd is PID 1 (kubeadm's default)"
fi
case $driver in
  systemd|cgroupfs) echo "node-setup: cgroup driver $driver: $why" ;;
  *) echo "node-setup: cgroup driver '$driver' ($why)? want systemd or cgroupfs" >&2; exit 1 ;;
esac
make install
mkdir -p /etc/hull
[ -f /etc/hull/configuration.toml ] || install -m 0644 configuration.toml /etc/hull/configuration.toml
if [ -d /etc/crio ]; then
  install -D -m 0644 deploy/crio-hull.conf /etc/crio/crio.conf.d/50-hull.conf
  # CRI-O's cgroup_manager is the node's; hull follows it through conmon.
  manager=
  if command -v crio >/dev/null; then manager=$(crio config 2>/dev/null | sed -n 's/^ *cgroup_manager *= *"\(.*\)"/\1/p' | head -n1); fi
  if [ -n "$manager" ] && [ "$manager" != "$driver" ]; then
    echo "node-setup: CRI-O's cgroup_manager is $manager, the node's driver $driver: make them agree" >&2
  fi
  echo "node-setup: CRI-O configured; restart crio to load the hull handler"
fi
if [ -f /etc/containerd/config.toml ]; then
  config=/etc/containerd/config.toml
  if [ "$handler" = shim ] && [ ! -x /usr/local/bin/containerd-shim-hull-v2 ]; then
    echo "node-setup: make install put no /usr/local/bin/containerd-shim-hull-v2" >&2
    exit 1
  fi
  # An imported file must say the same config version as config.toml:
  # under a version 3 config.toml, containerd 2 drops a version 2 file's
  # CRI tables with no more than a warning in its log.
  version=$(sed -n 's/^version *= *\([0-9]*\).*/\1/p' "$config" | head -n1)
  case $version in
    2) snippet=$snippet.toml ;;
    3) snippet=$snippet.config3.toml ;;
    *) echo "node-setup: $config says version = ${version:-(none)}; hull's snippets are for versions 2 and 3" >&2; exit 1 ;;
  esac
  # containerd merges imported files into its config: no editing of tables.
  install -D -m 0644 "$snippet" /etc/containerd/conf.d/hull.toml
  if [ "$handler" = runc-shim ] && [ "$driver" = systemd ]; then
    # The runc shim passes hull --systemd-cgroup only when told.
    sed -i 's/^\( *\)BinaryName = .*/&\n\1SystemdCgroup = true/' /etc/containerd/conf.d/hull.toml
  fi
  if ! grep -q '^imports' "$config"; then
    sed -i '1i imports = ["/etc/containerd/conf.d/*.toml"]' "$config"
  elif ! grep -q 'conf.d/\*.toml\|conf.d/hull.toml' "$config"; then
    echo "node-setup: add /etc/containerd/conf.d/hull.toml to the imports of $config" >&2
    exit 1
  fi
  # containerd 1.x, unlike 2.x, replaces config.toml's whole CRI section
  # with the imported file's.
  ctrd=
  if command -v containerd >/dev/null; then ctrd=$(containerd --version | awk '{print $3}'); fi
  ctrd=${ctrd#v}
  if [ "${ctrd%%.*}" = 1 ] && grep -q '^ *\[plugins\."io\.containerd\.grpc\.v1\.cri"' "$config"; then
    echo "node-setup: containerd $ctrd takes the CRI plugin's section from conf.d/hull.toml alone:" >&2
    echo "node-setup: copy what $config sets under [plugins.\"io.containerd.grpc.v1.cri\"] into it" >&2
  fi
  echo "node-setup: containerd configured ($handler, $snippet); restart containerd to load the hull handler"
fi
hull check
echo "node-setup: now kubectl apply -f deploy/runtimeclass.yaml"
