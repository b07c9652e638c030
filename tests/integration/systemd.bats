#!/usr/bin/env bats
# hull's systemd cgroup driver against a real systemd: this host has none
# as PID 1, so the suite boots Debian 12's in a container (systemd.bash)
# and runs hull, QEMU, conmon and containerd inside it. conmon gets CRI-O's
# arguments under cgroup_manager = "systemd" (--systemd-cgroup, cgroupsPath
# "slice:crio:ID"); the CLI gets the runc shim's command line under
# SystemdCgroup = true ("slice:cri-containerd:ID"), directly and through
# containerd's CRI; hull's shim gets a pod whose parent is a .slice. Each
# scope must be that systemd's, hold QEMU and the proxies (or the shim),
# carry the limits as its properties (and in the kernel), and be gone with
# every cgroup directory of it after the delete, a crash's included.

load helpers
load systemd

setup_file() {
  require_host
  for cmd in systemd-nspawn debootstrap nsenter; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install systemd-container debootstrap)" >&2; return 1; }
  done
  SD=$(mktemp -d /tmp/hull-sd.XXXXXX)
  export SD
  sd_boot
  start_cri
}

teardown_file() {
  [ -n "${SD:-}" ] || return 0
  local rc=0
  stop_cri
  sd_stop || rc=$?
  kill_and_unmount "$SD"
  rm -rf "$SD"
  return $rc
}

setup() {
  T=$(mktemp -d "$SD/t.XXXXXX")
  ROOT=$T/root
  write_config "$T/hull.toml"
  mkdir -p "$T/exits" "$T/attach"
}

teardown() {
  local id left
  for id in $(hull list -q 2>/dev/null); do hull delete --force "$id" >/dev/null 2>&1 || true; done
  for id in $(cri pods -q 2>/dev/null); do cri stopp "$id" >/dev/null 2>&1 || true; cri rmp -f "$id" >/dev/null 2>&1 || true; done
  left=$({ sd_leaks "$T"; sd_leaks "$C"; } | sort -u)
  # The pod slices stand for the kubelet's, which outlive their pods.
  sd systemctl stop kubepods.slice test.slice >/dev/null 2>&1 || true
  if [ -n "$left" ]; then
    echo "LEAKED:" >&2; echo "$left" >&2
    for id in $(sd systemctl list-units --all --no-legend --plain "${SCOPES[@]}" | awk '{print $1}'); do
      sd systemctl stop "$id" >/dev/null 2>&1 || true
    done
    kill_and_unmount "$T"
    return 1
  fi
}

# hull runs the CLI inside the container, as CRI-O and the runc shim would
# there (without --systemd-cgroup: the state remembers the driver);
# hull_systemd is create's command line, with it.
hull() { sd "$HULL_BIN" --root "$ROOT" "$@"; }
hull_systemd() { sd "$HULL_BIN" --root "$ROOT" --systemd-cgroup "$@"; }

# The scopes the tests make: CRI-O's, containerd's and runc's default.
SCOPES=('crio-*.scope' 'cri-containerd-*.scope' 'hull-*.scope')

# sd_leaks DIR prints what a test left: processes naming DIR (hull's,
# QEMUs, shims: on the host, where the container's processes show too;
# containerd aside), the container's mounts under DIR (containerd's
# snapshots aside), the CLI's state, scopes still loaded, scope
# directories in any cgroup hierarchy of the container.
sd_leaks() {
  local dir=$1 p
  for p in $(pgrep -f -- "$dir" || true); do
    [ "$p" = "$(cat "$C/containerd.hostpid" 2>/dev/null)" ] && continue
    echo "process $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"
  done
  sd_mounts "$dir" | grep -v -- " $C/root/" | sed 's/^/mount /'
  if [ -d "$ROOT/containers" ]; then find "$ROOT/containers" -mindepth 1 -maxdepth 1 | sed 's/^/state /'; fi
  sd systemctl list-units --all --no-legend --plain "${SCOPES[@]}" | sed 's/^/unit /'
  sd find /sys/fs/cgroup -mindepth 2 -type d \( -name 'crio-*.scope' -o -name 'cri-containerd-*.scope' -o -name 'hull-*.scope' \) | sed 's/^/cgroup /'
}

# start_cri starts the Kubernetes side in the container: Debian's
# containerd 1.6 (bound in from the host) with the handlers hull
# (containerd's runc shim running hull, SystemdCgroup = true, so hull gets
# --systemd-cgroup) and hull-v2 (hull's own shim), its state under
# $C = $SD/cri, pods on a bridge in the container's network namespace;
# crictl is the kubelet (cri).
start_cri() {
  C=$SD/cri
  export C
  mkdir -p "$C/cni" "$C/logs"
  write_config "$C/hull.toml"
  cat > "$C/cni/10-hull.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "hullnet", "plugins": [
  {"type": "bridge", "bridge": "hullsd0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$C/cni-ipam", "ranges": [[{"subnet": "10.88.97.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
JSON
  local cri='plugins."io.containerd.grpc.v1.cri"'
  cat > "$C/containerd.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[$cri]
  sandbox_image = "docker.io/library/hull-pause:latest"
  restrict_oom_score_adj = true
  [$cri.containerd]
    snapshotter = "native"
    default_runtime_name = "hull"
    [$cri.containerd.runtimes.hull]
      runtime_type = "io.containerd.runc.v2"
      [$cri.containerd.runtimes.hull.options]
        BinaryName = "$HULL_BIN"
        Root = "$C/hull-root"
        SystemdCgroup = true
    [$cri.containerd.runtimes.hull-v2]
      runtime_type = "io.containerd.hull.v2"
      [$cri.containerd.runtimes.hull-v2.options]
        ConfigPath = "$C/hull.toml"
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni"
TOML
  printf 'runtime-endpoint: unix://%s/containerd.sock\nimage-endpoint: unix://%s/containerd.sock\ntimeout: 120\n' "$C" "$C" > "$C/crictl.yaml"
  # shellcheck disable=SC2016 # the container's shell expands them
  sd env PATH="$BUILD:/usr/sbin:/usr/bin:/sbin:/bin" HULL_CONFIG="$C/hull.toml" HULL_SHIM_ROOT="$C/shim-root" \
    sh -c 'containerd --config "$1/containerd.toml" > "$1/containerd.log" 2>&1 & echo $! > "$1/containerd.pid"' sh "$C" 3>&-
  local _
  for _ in $(seq 1 100); do [ -S "$C/containerd.sock" ] && break; sleep 0.1; done
  pgrep -f -- "containerd --config $C/containerd.toml" > "$C/containerd.hostpid"
  local rootfs=$C/img a
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  "$REPO/tests/integration/mkimage.sh" "$rootfs" hull-pause "$C/pause.tar" sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  "$REPO/tests/integration/mkimage.sh" "$rootfs" hull-busybox "$C/busybox.tar" sh
  for a in pause busybox; do sd ctr -a "$C/containerd.sock" -n k8s.io images import "$C/$a.tar" >/dev/null; done
}

stop_cri() {
  [ -f "${C:-}/containerd.pid" ] || return 0
  local p
  for p in $(cri pods -q 2>/dev/null); do cri stopp "$p" >/dev/null 2>&1 || true; cri rmp -f "$p" >/dev/null 2>&1 || true; done
  sd sh -c "kill $(cat "$C/containerd.pid")" || true
}

cri() { sd "$CRICTL" --config "$C/crictl.yaml" "$@"; }

# pod_config FILE UID [RESOURCES]: a pod whose cgroup parent is the
# kubelet's slice for it (kubepods-burstable-pod<UID>.slice).
pod_config() {
  local res=
  if [ -n "${3:-}" ]; then res=", \"resources\": $3"; fi
  cat > "$1" <<JSON
{"metadata": {"name": "p-$2", "namespace": "default", "uid": "$2"}, "log_directory": "$C/logs/$2",
 "linux": {"cgroup_parent": "kubepods-burstable-pod$2.slice"$res}}
JSON
}

# POD_RESOURCES are a pod's, as the kubelet sums them for containerd.
POD_RESOURCES='{"cpu_quota": 50000, "cpu_period": 100000, "cpu_shares": 256, "memory_limit_in_bytes": 134217728}'

# container_config FILE: a busybox container with a CPU and memory limit.
container_config() {
  cat > "$1" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "docker.io/library/hull-busybox:latest"},
 "command": ["sh", "-c", "echo hello; sleep 600"], "log_path": "web.log",
 "linux": {"resources": {"cpu_quota": 50000, "cpu_period": 100000, "memory_limit_in_bytes": 134217728}}}
JSON
}

# wait_no_leaks DIR: sd_leaks DIR until it is empty, 30 s at most (a
# shim's cleanup after its death is containerd's, and asynchronous).
wait_no_leaks() {
  local _
  for _ in $(seq 1 150); do
    output=$(sd_leaks "$1")
    [ -z "$output" ] && return 0
    sleep 0.2
  done
  echo "left after 30 s: $output" >&2
  return 1
}

# scope_of PID: the name=systemd cgroup of a process in the container.
scope_of() { sd cat "/proc/$1/cgroup" | sed -n 's/^[0-9]*:name=systemd://p'; }

# sandbox_info KEY: a key of the (one) sandbox's sandbox.json; PIDs there
# are the container's.
sandbox_info() { jq -r ".$1" "$ROOT"/sandboxes/*/sandbox.json; }

# conmon_create ID BUNDLE: what CRI-O runs to create a container with the
# systemd cgroup manager.
conmon_create() {
  local id=$1 b=$2
  sd conmon -b "$b" -c "$id" --exit-dir "$T/exits" -l "$T/$id.log" --log-level debug -n "k8s_$id" \
    -P "$b/conmon-pidfile" -p "$b/pidfile" --persist-dir "$b" -r "$HULL_BIN" --systemd-cgroup \
    --runtime-arg "--root=$ROOT" --socket-dir-path "$T/attach" --syslog -u "$id" </dev/null
  wait_exists "$b/pidfile" 120
}

# pod_bundle DIR SANDBOX_ID TYPE CGROUPS_PATH ARGS...
pod_bundle() {
  local dir=$1 sid=$2 type=$3 cg=$4; shift 4
  make_bundle "$dir" "$@"
  edit_spec "$dir" ".linux.cgroupsPath = \"$cg\"
    | .annotations = {\"io.kubernetes.cri-o.ContainerType\": \"$type\", \"io.kubernetes.cri-o.SandboxID\": \"$sid\"}"
}

@test "hull check names the driver: systemd with --systemd-cgroup where systemd is PID 1, cgroupfs without" {
  run hull_systemd check
  echo "$output"
  [[ "$output" == *"cgroup driver systemd: --systemd-cgroup given, and systemd is PID 1; the containerd shim uses systemd for a cgroupsPath in systemd form"* ]]
  run hull check
  [[ "$output" == *"cgroup driver cgroupfs: no --systemd-cgroup (systemd is PID 1, but the caller uses cgroupfs)"* ]]
}

@test "conmon with CRI-O's systemd arguments: each container's scope holds its processes, the pod's QEMU with the limits; nothing left after delete" {
  local slice=kubepods-burstable-pod$$.slice
  local scope=/kubepods.slice/kubepods-burstable.slice/$slice
  pod_bundle "$T/pause" pod1 sandbox "$slice:crio:pod1" sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  edit_spec "$T/pause" '.linux.resources = {"memory": {"limit": 134217728}, "cpu": {"quota": 50000, "period": 100000, "shares": 512}}'
  conmon_create pod1 "$T/pause"
  hull start pod1

  # systemd made the scope, in the slice's hierarchy, and it holds the
  # sandbox's host processes: the proxy, the monitor and QEMU.
  run sd systemctl status --no-pager --lines 0 crio-pod1.scope
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"Active: active (running)"* ]]
  [[ "$output" == *"CGroup: $scope/crio-pod1.scope"* ]]
  [[ "$output" == *qemu-system-x86_64* ]]
  [[ "$output" == *"__monitor --id pod1"* ]]
  [[ "$output" == *"__proxy --sandbox pod1 --id pod1"* ]]
  [ "$(scope_of "$(sandbox_info qemuPid)")" = "$scope/crio-pod1.scope" ]
  [ "$(scope_of "$(sandbox_info monitorPid)")" = "$scope/crio-pod1.scope" ]
  [ "$(scope_of "$(cat "$T/pause/pidfile")")" = "$scope/crio-pod1.scope" ]

  # The limits, sized for the VM (its memory plus QEMU's overhead), are the
  # scope's properties, and systemd wrote them into the kernel.
  local vm_mib mem
  vm_mib=$(pgrep -fa -- "qemu-system.*$T" | sed -n 's/.* -m \([0-9]*\)M .*/\1/p')
  mem=$(( (vm_mib + 96) * 1024 * 1024 ))
  run sd systemctl show -p CPUQuotaPerSecUSec,MemoryLimit,CPUShares,Delegate,Slice,DevicePolicy crio-pod1.scope
  echo "$output"
  [[ "$output" == *"CPUQuotaPerSecUSec=500ms"* ]]
  [[ "$output" == *"MemoryLimit=$mem"* ]]
  [[ "$output" == *"CPUShares=512"* ]]
  [[ "$output" == *"Delegate=yes"* ]]
  [[ "$output" == *"Slice=$slice"* ]]
  [[ "$output" == *"DevicePolicy=strict"* ]]
  [ "$(sd cat "/sys/fs/cgroup/memory$scope/crio-pod1.scope/memory.limit_in_bytes")" = "$mem" ]
  [ "$(sd cat "/sys/fs/cgroup/cpu$scope/crio-pod1.scope/cpu.cfs_quota_us")" = 50000 ]
  [ "$(sd cat "/sys/fs/cgroup/cpu$scope/crio-pod1.scope/cpu.shares")" = 512 ]

  # An app container of the pod: a scope of its own for its proxy, in the
  # pod's VM; the limits are the sandbox's alone.
  pod_bundle "$T/app" pod1 container "$slice:crio:app1" sh -c 'echo app-out; sleep 600'
  conmon_create app1 "$T/app"
  hull start app1
  wait_file "$T/app1.log" app-out
  [ "$(scope_of "$(cat "$T/app/pidfile")")" = "$scope/crio-app1.scope" ]
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 1 ]
  run sd systemctl show -p MemoryLimit,CPUQuotaPerSecUSec crio-app1.scope
  [[ "$output" == *"MemoryLimit=infinity"* ]]
  [[ "$output" == *"CPUQuotaPerSecUSec=infinity"* ]]

  # A detached exec (CRI-O's exec through conmon): its proxy joins the
  # container's running scope.
  jq '.process | .args = ["sh", "-c", "echo exec-out; sleep 600"]' "$T/app/config.json" > "$T/proc.json"
  sd conmon -c app1 -n k8s_app1 -r "$HULL_BIN" -p "$T/exec.pid" -e -l "$T/exec.log" \
    --socket-dir-path "$T/attach" --log-level debug --exec-process-spec "$T/proc.json" \
    --runtime-arg "--root=$ROOT" </dev/null
  wait_file "$T/exec.log" exec-out
  [ "$(scope_of "$(cat "$T/exec.pid")")" = "$scope/crio-app1.scope" ]

  hull kill app1 KILL
  wait_exists "$T/exits/app1" 30
  hull delete app1
  run sd systemctl list-units --all --no-legend crio-app1.scope
  [ -z "$output" ]
  [ -n "$(sd find /sys/fs/cgroup/systemd$scope -name crio-pod1.scope)" ]

  hull kill pod1 TERM
  wait_exists "$T/exits/pod1" 30
  hull delete pod1
  run sd_leaks "$T"
  [ -z "$output" ]
}

@test "kill -9 of the monitor, then delete --force: no scope, no cgroup, no process left" {
  make_bundle "$T/b" sh -c 'while :; do sleep 1; done'
  edit_spec "$T/b" '.linux.cgroupsPath = "test.slice:cri-containerd:c1"
    | .linux.resources = {"memory": {"limit": 67108864}, "cpu": {"quota": 100000, "period": 100000}}'
  # containerd's runc shim with SystemdCgroup = true runs it so.
  hull_systemd --log "$T/log.json" --log-format json create --bundle "$T/b" --pid-file "$T/b/init.pid" c1 </dev/null
  hull start c1
  run sd systemctl show -p CPUQuotaPerSecUSec,MemoryLimit,ControlGroup cri-containerd-c1.scope
  echo "$output"
  [[ "$output" == *"CPUQuotaPerSecUSec=1s"* ]]
  [[ "$output" == *"ControlGroup=/test.slice/cri-containerd-c1.scope"* ]]
  local qemu stray
  qemu=$(sandbox_info qemuPid)
  [ "$(scope_of "$qemu")" = /test.slice/cri-containerd-c1.scope ]
  # A process that would outlive the sandbox in its scope (a QEMU deaf to
  # its parent's death, say): the delete must end it with the scope.
  # shellcheck disable=SC2016 # the container's shell expands them
  stray=$(sd sh -c 'sh -c "sleep 600; :" "stray $1" >/dev/null 2>&1 & echo $!' sh "$T")
  sd busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
    AttachProcessesToUnit ssau cri-containerd-c1.scope "" 1 "$stray"
  [ "$(scope_of "$stray")" = /test.slice/cri-containerd-c1.scope ]

  sd sh -c "kill -9 $(sandbox_info monitorPid)" # dash's kill: no procps in the container
  # QEMU follows its monitor (parent-death signal); the proxy is still there.
  for _ in $(seq 1 100); do sd test -e "/proc/$qemu" || break; sleep 0.1; done
  run sd test -e "/proc/$qemu"
  [ "$status" -ne 0 ]
  hull delete --force c1
  run sd_leaks "$T"
  echo "$output"
  [ -z "$output" ]
}

@test "an empty cgroupsPath is runc's default scope in system.slice; a cgroupfs path is refused and leaves nothing" {
  make_bundle "$T/b" sh -c 'echo out; sleep 600'
  edit_spec "$T/b" 'del(.linux.cgroupsPath)'
  hull_systemd create --bundle "$T/b" c2 </dev/null > "$T/out" 2>&1
  [ "$(scope_of "$(sandbox_info qemuPid)")" = /system.slice/hull-c2.scope ]
  hull delete --force c2
  run sd_leaks "$T"
  [ -z "$output" ]

  edit_spec "$T/b" '.linux.cgroupsPath = "/kubepods/pod1/c3"'
  run hull_systemd create --bundle "$T/b" c3 </dev/null
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *'cgroupsPath "/kubepods/pod1/c3": the systemd cgroup driver wants "slice:prefix:name"'* ]]
  run hull list -q
  [ -z "$output" ]
  run sd_leaks "$T"
  [ -z "$output" ]
}

@test "containerd's CRI with SystemdCgroup = true (the runc shim running hull): scopes in the pod's slice, QEMU and the pod's limits in the sandbox's; nothing left after stopp and rmp" {
  local uid=runc$$ slice scope p cid
  slice=kubepods-burstable-pod$uid.slice
  scope=/kubepods.slice/kubepods-burstable.slice/$slice
  pod_config "$T/pod.json" "$uid" "$POD_RESOURCES"
  container_config "$T/ctr.json"
  p=$(cri runp --runtime hull "$T/pod.json")
  cid=$(cri create "$p" "$T/ctr.json" "$T/pod.json")
  cri start "$cid"

  run sd systemctl status --no-pager --lines 0 "cri-containerd-$p.scope"
  echo "$output"
  [[ "$output" == *"Active: active (running)"* ]]
  [[ "$output" == *"CGroup: $scope/cri-containerd-$p.scope"* ]]
  [[ "$output" == *qemu-system-x86_64* ]]
  [[ "$output" == *"__monitor --id $p"* ]]
  # The pod's size (containerd's sandbox annotations, from the kubelet's
  # PodSandboxConfig) is the sandbox scope's limits.
  run sd systemctl show -p CPUQuotaPerSecUSec,MemoryLimit,CPUShares "cri-containerd-$p.scope"
  echo "$output"
  [[ "$output" == *"CPUQuotaPerSecUSec=500ms"* ]]
  [[ "$output" == *"CPUShares=256"* ]]
  [[ "$output" != *"MemoryLimit=infinity"* ]]
  # The app container's own scope holds its proxy; it runs in the pod's VM.
  run sd systemctl status --no-pager --lines 0 "cri-containerd-$cid.scope"
  [[ "$output" == *"CGroup: $scope/cri-containerd-$cid.scope"* ]]
  [[ "$output" == *"__proxy --sandbox $p --id $cid"* ]]
  [ "$(pgrep -fc -- "qemu-system.*$C")" = 1 ]
  run cri exec "$cid" uname -r
  [ "$output" != "$(uname -r)" ]

  cri stopp "$p"
  cri rmp "$p"
  run sd_leaks "$C"
  echo "$output"
  [ -z "$output" ]
}

@test "containerd's CRI through hull's shim: a .slice parent makes the pod's scope, holding the shim and QEMU with the pod's limits; kill -9 of the shim: containerd's cleanup leaves nothing" {
  local uid=shim$$ slice scope p cid shim
  slice=kubepods-burstable-pod$uid.slice
  scope=/kubepods.slice/kubepods-burstable.slice/$slice
  pod_config "$T/pod.json" "$uid" "$POD_RESOURCES"
  container_config "$T/ctr.json"
  p=$(cri runp --runtime hull-v2 "$T/pod.json")
  cid=$(cri create "$p" "$T/ctr.json" "$T/pod.json")
  cri start "$cid"
  grep "msg=\"pod cgroup\" pod=$p " "$C/containerd.log" | grep -q 'driver=systemd why="cgroupsPath in systemd form (slice:prefix:name), and systemd is PID 1"'

  run sd systemctl status --no-pager --lines 0 "cri-containerd-$p.scope"
  echo "$output"
  [[ "$output" == *"CGroup: $scope/cri-containerd-$p.scope"* ]]
  [[ "$output" == *"containerd-shim-hull-v2 -namespace k8s.io"* ]]
  [[ "$output" == *qemu-system-x86_64* ]]
  run sd systemctl show -p Delegate,Slice,CPUQuotaPerSecUSec,MemoryLimit,CPUShares "cri-containerd-$p.scope"
  echo "$output"
  [[ "$output" == *"Delegate=yes"* ]]
  [[ "$output" == *"Slice=$slice"* ]]
  [[ "$output" == *"CPUQuotaPerSecUSec=500ms"* ]]
  [[ "$output" == *"CPUShares=256"* ]]
  [[ "$output" != *"MemoryLimit=infinity"* ]]
  run cri exec "$cid" uname -r
  [ "$output" != "$(uname -r)" ]

  # What the shim's death would strand in the scope: containerd's cleanup
  # (containerd-shim-hull-v2 delete) must stop the scope, and so end it.
  local stray
  # shellcheck disable=SC2016 # the container's shell expands them
  stray=$(sd sh -c 'sh -c "sleep 600; :" "stray $1" >/dev/null 2>&1 & echo $!' sh "$C")
  sd busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
    AttachProcessesToUnit ssau "cri-containerd-$p.scope" "" 1 "$stray"
  [ "$(scope_of "$stray")" = "$scope/cri-containerd-$p.scope" ]
  shim=$(pgrep -f -- "containerd-shim-hull-v2 .*-id $p")
  kill -9 "$shim"
  cri stopp "$p"
  cri rmp "$p"
  wait_no_leaks "$C"
}
