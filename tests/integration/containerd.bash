# A private containerd for the CRI suites: Debian 12's containerd 1.6
# (config version 2) or containerd 2.x as scripts/containerd2.sh builds it
# (config version 3), with its own root, state, socket and CNI config under
# one directory and three CRI runtime handlers:
#
#   runc     the default: containerd's runc shim running runc
#   hull     containerd's runc shim running hull as its BinaryName, with
#            its state under DIR/hull-root (what deploy/containerd-hull.toml
#            installs)
#   hull-v2  hull's own shim, runtime_type io.containerd.hull.v2
#            (containerd-shim-hull-v2 from $BUILD), given DIR/hull.toml as
#            its options' ConfigPath, with its state under DIR/shim-root
#            (HULL_SHIM_ROOT)
#
# Both handlers run hull with DIR/hull.toml (write_config's, unless the
# suite wrote its own there first). Load helpers.bash first (REPO, BUILD,
# HULL_BIN, write_config, stop_daemon):
#
#   load helpers
#   load containerd
#
# The CNI network is cri-containerd.bats's (bridge hullcri0, 10.88.99.0/24):
# one of these containerds at a time on a host.

# containerd_bindir VERSION prints the directory holding containerd, ctr and
# containerd-shim-runc-v2 of that major version: 1 is Debian's 1.6, 2 is
# containerd 2.x from the cache (built there first if missing).
containerd_bindir() {
  case $1 in
    1) echo /usr/bin ;;
    2) bash "$REPO/scripts/containerd2.sh" ;;
    *) echo "containerd_bindir: version 1 or 2, not '$1'" >&2; return 1 ;;
  esac
}

# start_containerd DIR VERSION starts containerd VERSION (1 or 2) in the
# background with its config, root, state, socket (DIR/containerd.sock), log
# (DIR/containerd.log) and CNI config under DIR; its PID goes to
# DIR/containerd.pid (stop_containerd DIR). $BUILD comes first on its PATH,
# so that it runs the containerd-shim-hull-v2 built there; containerd 2's
# own runc shim comes next, before Debian's 1.6 one.
start_containerd() {
  local dir=$1 version=$2 bindir path
  bindir=$(containerd_bindir "$version") || return 1
  [ -x "$bindir/containerd" ] || { echo "start_containerd: $bindir/containerd missing" >&2; return 1; }
  mkdir -p "$dir/cni" "$dir/hull-root" "$dir/shim-root"
  [ -f "$dir/hull.toml" ] || write_config "$dir/hull.toml"
  _containerd_cni_config "$dir" > "$dir/cni/10-hull.conflist"
  case $version in
    1) _containerd_config_v2 "$dir" > "$dir/containerd.toml"; path=$BUILD:$PATH ;;
    2) _containerd_config_v3 "$dir" > "$dir/containerd.toml"; path=$BUILD:$bindir:$PATH ;;
  esac
  echo "$version" > "$dir/containerd.version"
  # ctr's namespace, this containerd's own: ctr puts a container's cgroup
  # at /<namespace>/<id>, which must not meet another run's.
  echo "hull-$(printf %s "$dir" | sha256sum | cut -c1-12)" > "$dir/namespace"
  # containerd passes its environment on to its shims: HULL_CONFIG reaches
  # hull through the runc shim (containerd-shim-hull-v2 has its ConfigPath),
  # HULL_SHIM_ROOT moves containerd-shim-hull-v2's state from /run/hull-shim.
  PATH=$path HULL_CONFIG=$dir/hull.toml HULL_SHIM_ROOT=$dir/shim-root \
    "$bindir/containerd" --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  local _
  for _ in $(seq 1 100); do
    [ -S "$dir/containerd.sock" ] && return 0
    kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "start_containerd: no $dir/containerd.sock; containerd's log:" >&2
  tail -n 20 "$dir/containerd.log" >&2
  return 1
}

# stop_containerd DIR stops the containerd start_containerd DIR started
# (SIGKILL after 10 s).
stop_containerd() {
  stop_daemon "$1/containerd.pid" 10
  remove_template "$1/hull.toml"
  # The (empty) parents of its ctr namespace's cgroups.
  if [ -f "$1/namespace" ]; then
    rmdir /sys/fs/cgroup/*/"$(cat "$1/namespace")" 2>/dev/null || true
  fi
}

# containerd_ctr DIR ARGS... runs the ctr of DIR's containerd version
# against its socket, e.g. containerd_ctr "$C" -n k8s.io images import X.
containerd_ctr() {
  local dir=$1 bindir; shift
  bindir=$(containerd_bindir "$(cat "$dir/containerd.version")") || return 1
  CONTAINERD_NAMESPACE=$(cat "$dir/namespace") "$bindir/ctr" -a "$dir/containerd.sock" "$@"
}

_containerd_cni_config() {
  cat <<JSON
{"cniVersion": "1.0.0", "name": "hullnet", "plugins": [
  {"type": "bridge", "bridge": "hullcri0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$1/cni-ipam", "ranges": [[{"subnet": "10.88.99.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
}

# _containerd_runtimes TABLE DIR: the three handlers, under TABLE (the CRI
# plugin's containerd table, which config versions 2 and 3 name apart).
_containerd_runtimes() {
  local t=$1 dir=$2
  cat <<TOML
    default_runtime_name = "runc"
    [$t.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [$t.runtimes.hull]
      runtime_type = "io.containerd.runc.v2"
      [$t.runtimes.hull.options]
        BinaryName = "$HULL_BIN"
        Root = "$dir/hull-root"
    [$t.runtimes.hull-v2]
      runtime_type = "io.containerd.hull.v2"
      [$t.runtimes.hull-v2.options]
        ConfigPath = "$dir/hull.toml"
TOML
}

# containerd 1.6/1.7: every CRI setting under the one CRI plugin.
_containerd_config_v2() {
  local dir=$1 cri='plugins."io.containerd.grpc.v1.cri"'
  cat <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[$cri]
  sandbox_image = "docker.io/library/hull-pause:latest"
  restrict_oom_score_adj = true
  [$cri.containerd]
    snapshotter = "native"
$(_containerd_runtimes "$cri.containerd" "$dir")
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
TOML
}

# containerd 2.x: the CRI plugin split in two, images (snapshotter, sandbox
# image) and runtime (handlers, CNI, OOM score); bin_dir became bin_dirs in
# 2.1. NRI, on by default in 2.x, would listen on the host-wide
# /var/run/nri/nri.sock: off.
_containerd_config_v3() {
  local dir=$1 images='plugins."io.containerd.cri.v1.images"' runtime='plugins."io.containerd.cri.v1.runtime"'
  cat <<TOML
version = 3
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[$images]
  snapshotter = "native"
  [$images.pinned_images]
    sandbox = "docker.io/library/hull-pause:latest"
[$runtime]
  restrict_oom_score_adj = true
  [$runtime.containerd]
$(_containerd_runtimes "$runtime.containerd" "$dir")
  [$runtime.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni"
TOML
}

# shim_leaks DIR prints what containerd-shim-hull-v2 left of start_containerd
# DIR's tasks: tasks and containers, shims, QEMU and virtiofsd, mounts
# (containerd's own snapshots aside), pod state and sockets, ctr's cgroups.
shim_leaks() {
  local dir=$1
  containerd_ctr "$dir" task ls -q | sed 's/^/task /'
  containerd_ctr "$dir" containers ls -q | sed 's/^/container /'
  pgrep -fa -- "containerd-shim-hull-v2 .*$dir" | sed 's/^/shim /'
  pgrep -fa -- "(qemu-system|virtiofsd).*$dir" | cut -c1-120 | sed 's/^/process /'
  mountinfo_under "$dir/" | grep -v -- "$dir/root/" | awk '{print "mount " $5}'
  find "$dir/shim-root" -mindepth 1 -maxdepth 3 -not -path "$dir/shim-root/s" 2>/dev/null | sed 's/^/state /'
  find "$dir/shim-root/s" -mindepth 1 2>/dev/null | sed 's/^/socket /'
  find "/sys/fs/cgroup/memory/$(cat "$dir/namespace")" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sed 's/^/cgroup /'
  true
}

# shim_teardown DIR fails if a test left something (shim_leaks), after
# removing what it left.
shim_teardown() {
  local dir=$1 left t
  left=$(shim_leaks "$dir")
  [ -n "$left" ] || return 0
  echo "LEAKED:" >&2; echo "$left" >&2
  for t in $(containerd_ctr "$dir" task ls -q 2>/dev/null); do
    containerd_ctr "$dir" task kill -s KILL "$t" >/dev/null 2>&1 || true
    containerd_ctr "$dir" task delete -f "$t" >/dev/null 2>&1 || true
  done
  for t in $(containerd_ctr "$dir" containers ls -q 2>/dev/null); do containerd_ctr "$dir" containers rm "$t" >/dev/null 2>&1 || true; done
  return 1
}

# import_busybox DIR: a busybox image, docker.io/library/hull-busybox:latest,
# in DIR's containerd (its ctr namespace, or $2).
import_busybox() {
  local dir=$1 ns=${2:-$(cat "$1/namespace")} rootfs=$1/img a
  mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,www}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  echo "hello from the pod" > "$rootfs/www/index.html"
  "$REPO/tests/integration/mkimage.sh" "$rootfs" hull-busybox "$dir/busybox.tar" sh
  containerd_ctr "$dir" -n "$ns" images import "$dir/busybox.tar" >/dev/null
}

# The CRI helpers below use $C (the containerd's directory), $CRICTL and
# $HANDLER (the runtime handler pods run on).
CRICTL=${CRICTL:-$(command -v crictl || echo /root/go/bin/crictl)}

# import_cri_images DIR: images for the CRI from archives built here:
# busybox with a web page (in DIR/img), and a pause made of the same root.
import_cri_images() {
  import_busybox "$1" k8s.io
  "$REPO/tests/integration/mkimage.sh" "$1/img" hull-pause "$1/pause.tar" sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  containerd_ctr "$1" -n k8s.io images import "$1/pause.tar" >/dev/null
}

# remove_pods stops and removes every pod of $C's containerd.
remove_pods() {
  local p
  for p in $(cri pods -q 2>/dev/null); do
    cri stopp "$p" >/dev/null 2>&1 || true
    cri rmp -f "$p" >/dev/null 2>&1 || true
  done
}

# cri ARGS...: crictl against $C's containerd.
cri() {
  [ -f "$C/crictl.yaml" ] || printf 'runtime-endpoint: unix://%s/containerd.sock\nimage-endpoint: unix://%s/containerd.sock\ntimeout: 120\n' "$C" "$C" > "$C/crictl.yaml"
  "$CRICTL" --config "$C/crictl.yaml" "$@" 2> >(grep -v cgroup_parent >&2)
}

# pod NAME [LINUX-JSON]: runs a pod sandbox on $HANDLER, prints its ID. Its
# network namespace and ID go on the lists no_leaks checks.
pod() {
  local linux='{}'
  [ -z "${2:-}" ] || linux=$2
  cat > "$C/$1-pod.json" <<JSON
{"metadata": {"name": "$1", "namespace": "default", "uid": "uid-$1", "attempt": 0}, "log_directory": "$C/logs/$1", "linux": $linux}
JSON
  mkdir -p "$C/logs/$1"
  local id; id=$(cri runp --runtime "$HANDLER" "$C/$1-pod.json") || return 1
  echo "$id" >> "$C/ids.list"
  cri inspectp "$id" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path // empty' >> "$C/netns.list"
  echo "$id"
}

# ctr_in POD_ID POD_NAME NAME CMD...: creates and starts a container.
ctr_in() {
  local pid=$1 pname=$2 name=$3; shift 3
  local cmd; cmd=$(jq -n -c '$ARGS.positional' --args -- "$@")
  cat > "$C/$name.json" <<JSON
{"metadata": {"name": "$name"}, "image": {"image": "docker.io/library/hull-busybox:latest"}, "command": $cmd, "log_path": "$name.log", "linux": {}}
JSON
  local id; id=$(cri create "$pid" "$C/$name.json" "$C/$pname-pod.json") || return 1
  echo "$id" >> "$C/ids.list"
  cri start "$id" >/dev/null
  echo "$id"
}

