#!/usr/bin/env bats
# Kubernetes through containerd's CRI: Debian's containerd 1.6 with a
# private config, hull as a runc v2 handler, crictl as the kubelet.

load helpers

CRICTL=${CRICTL:-$(command -v crictl || echo /root/go/bin/crictl)}

setup_file() {
  require_host
  [ -x "$CRICTL" ] || { echo "crictl missing (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)" >&2; return 1; }
  C=$(mktemp -d /tmp/hull-cri.XXXXXX)
  export C
  write_config "$C/hull.toml"
  mkdir -p "$C/cni" "$C/logs"
  cat > "$C/cni/10-hull.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "hullnet", "plugins": [
  {"type": "bridge", "bridge": "hullcri0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$C/cni-ipam", "ranges": [[{"subnet": "10.88.99.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
  cat > "$C/containerd.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/hull-pause:latest"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull.options]
        BinaryName = "$HULL_BIN"
        Root = "$C/hull-root"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni"
TOML
  containerd --config "$C/containerd.toml" >"$C/containerd.log" 2>&1 &
  echo $! > "$C/containerd.pid"
  for _ in $(seq 1 100); do [ -S "$C/containerd.sock" ] && break; sleep 0.1; done
  # Images from archives built here: a busybox-based pause and a web image.
  local rootfs=$C/img
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  echo "hello from the pod" > "$rootfs/www/index.html"
  "$REPO/tests/integration/mkimage.sh" "$rootfs" hull-pause "$C/pause.tar" sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  "$REPO/tests/integration/mkimage.sh" "$rootfs" hull-busybox "$C/busybox.tar" sh
  for img in pause busybox; do ctr -a "$C/containerd.sock" -n k8s.io images import "$C/$img.tar" >/dev/null; done
}

teardown_file() {
  [ -n "${C:-}" ] || return 0
  for p in $(cri pods -q 2>/dev/null); do cri stopp "$p" >/dev/null 2>&1 || true; cri rmp -f "$p" >/dev/null 2>&1 || true; done
  stop_daemon "$C/containerd.pid" 10
  kill_and_unmount "$C"
  ip link del hullcri0 2>/dev/null || true
  rm -rf "$C"
}

cri() {
  [ -f "$C/crictl.yaml" ] || printf 'runtime-endpoint: unix://%s/containerd.sock\nimage-endpoint: unix://%s/containerd.sock\ntimeout: 120\n' "$C" "$C" > "$C/crictl.yaml"
  "$CRICTL" --config "$C/crictl.yaml" "$@" 2> >(grep -v cgroup_parent >&2)
}

qemus() { pgrep -fc -- "qemu-system.*$C" || true; }

no_leaks() {
  [ "$(qemus)" = 0 ] || { echo "QEMU left" >&2; return 1; }
  # A monitor or proxy names $C in its --root, before the hidden command.
  if pgrep -fa -- "$C/.*__(monitor|proxy) " >&2; then echo "hull processes left" >&2; return 1; fi
  if grep -F -- "$C/hull-root" /proc/self/mountinfo >&2; then echo "mounts left" >&2; return 1; fi
  [ -z "$(ls -A "$C/hull-root/k8s.io/containers" 2>/dev/null)" ] || { echo "state left" >&2; return 1; }
  [ -z "$(ls -A "$C/hull-root/k8s.io/sandboxes" 2>/dev/null)" ] || { echo "sandboxes left" >&2; return 1; }
}

# pod NAME: runs a pod sandbox with the hull handler, prints its ID.
pod() {
  cat > "$C/$1-pod.json" <<JSON
{"metadata": {"name": "$1", "namespace": "default", "uid": "uid-$1", "attempt": 0}, "log_directory": "$C/logs/$1", "linux": {}}
JSON
  mkdir -p "$C/logs/$1"
  cri runp --runtime hull "$C/$1-pod.json"
}

# ctr_in POD_ID POD_NAME NAME CMD...: creates and starts a container.
ctr_in() {
  local pid=$1 pname=$2 name=$3; shift 3
  local cmd; cmd=$(jq -n -c '$ARGS.positional' --args -- "$@")
  cat > "$C/$name.json" <<JSON
{"metadata": {"name": "$name"}, "image": {"image": "docker.io/library/hull-busybox:latest"}, "command": $cmd, "log_path": "$name.log", "linux": {}}
JSON
  local id; id=$(cri create "$pid" "$C/$name.json" "$C/$pname-pod.json")
  cri start "$id" >/dev/null
  echo "$id"
}

@test "a pod with two containers: one VM, same guest kernel, localhost between them, logs, exec" {
  p=$(pod p1)
  [ "$(qemus)" = 1 ]
  web=$(ctr_in "$p" p1 web sh -c 'echo web-started; uname -r; httpd -f -p 8080 -h /www')
  client=$(ctr_in "$p" p1 client sh -c 'uname -r; sleep 600')
  [ "$(qemus)" = 1 ]
  run cri exec -s "$web" uname -r
  web_kernel=$output
  [ "$web_kernel" != "$(uname -r)" ]
  run cri exec -s "$client" uname -r
  [ "$output" = "$web_kernel" ]
  # From one container to the other over the pod's localhost.
  for _ in $(seq 1 20); do
    out=$(cri exec -s "$client" wget -qO- http://127.0.0.1:8080/ 2>&1) && break; sleep 0.5
  done
  [ "$out" = "hello from the pod" ]
  # From the host on the pod IP.
  ip=$(cri inspectp "$p" | jq -r .status.network.ip)
  run curl -fs --retry 10 --retry-all-errors --retry-delay 1 "http://$ip:8080/"
  [ "$output" = "hello from the pod" ]
  run cri logs "$web"
  [[ "$output" == *web-started* ]]
  # Stopping one container keeps the other running.
  cri stop "$web" >/dev/null
  cri rm "$web" >/dev/null
  run cri exec -s "$client" echo still-here
  [ "$output" = still-here ]
  [ "$(qemus)" = 1 ]
  cri stopp "$p" >/dev/null
  cri rmp "$p" >/dev/null
  no_leaks
}

@test "three pods side by side: three VMs, each its own, all cleaned" {
  for n in 1 2 3; do
    p[n]=$(pod "q$n")
    c[n]=$(ctr_in "${p[$n]}" "q$n" "box$n" sh -c "echo q$n > /tmp/me; sleep 600")
  done
  [ "$(qemus)" = 3 ]
  for n in 1 2 3; do
    run cri exec -s "${c[$n]}" cat /tmp/me
    [ "$output" = "q$n" ]
  done
  for n in 1 2 3; do cri stopp "${p[$n]}" >/dev/null; cri rmp "${p[$n]}" >/dev/null; done
  no_leaks
}

@test "an exec probe that times out leaves no process in the pod" {
  pr=$(pod pr)
  box=$(ctr_in "$pr" pr box sleep 1000)
  # The kubelet's exec probe with a timeout: containerd kills the exec's
  # PID (hull's proxy) when the time is up.
  run cri exec --timeout 1 -s "$box" sleep 600
  [ "$status" -ne 0 ]
  wait_ps_without "sleep 600" cri exec -s "$box" ps
  [[ "$output" == *"sleep 1000"* ]]
  cri stopp "$pr" >/dev/null
  cri rmp "$pr" >/dev/null
  no_leaks
}

@test "a container with a bind volume exits and is removed without an error in containerd's log" {
  vp=$(pod vol)
  mkdir -p "$C/vol-src"
  cat > "$C/volbox.json" <<JSON
{"metadata": {"name": "volbox"}, "image": {"image": "docker.io/library/hull-busybox:latest"},
 "command": ["sh", "-c", "echo from-the-pod > /data/out"], "log_path": "volbox.log", "linux": {},
 "mounts": [{"container_path": "/data", "host_path": "$C/vol-src"}]}
JSON
  local before; before=$(grep -c 'level=error' "$C/containerd.log" || true)
  id=$(cri create "$vp" "$C/volbox.json" "$C/vol-pod.json")
  cri start "$id" >/dev/null
  for _ in $(seq 1 100); do
    [ "$(cri inspect "$id" | jq -r .status.state)" = CONTAINER_EXITED ] && break
    sleep 0.2
  done
  [ "$(cri inspect "$id" | jq -r .status.exitCode)" = 0 ]
  [ "$(cat "$C/vol-src/out")" = from-the-pod ]
  cri rm "$id" >/dev/null
  cri stopp "$vp" >/dev/null
  cri rmp "$vp" >/dev/null
  grep 'level=error' "$C/containerd.log" | tail -n +"$(( before + 1 ))" >&2 || true
  [ "$(grep -c 'level=error' "$C/containerd.log" || true)" = "$before" ]
  no_leaks
}

@test "a pod whose cgroup parent is test.slice (the systemd form, with the cgroupfs driver) runs and is cleaned" {
  cat > "$C/slice-pod.json" <<JSON
{"metadata": {"name": "slice", "namespace": "default", "uid": "uid-slice", "attempt": 0}, "log_directory": "$C/logs/slice",
 "linux": {"cgroup_parent": "test.slice"}}
JSON
  mkdir -p "$C/logs/slice"
  sp=$(cri runp --runtime hull "$C/slice-pod.json")
  box=$(ctr_in "$sp" slice box sleep 600)
  run cri exec -s "$box" echo in-the-slice
  [ "$output" = in-the-slice ]
  # containerd names the cgroup test.slice:cri-containerd:ID; as runc's
  # cgroupfs driver, hull takes it as one directory, and QEMU is in it.
  qemu=$(pgrep -f -- "qemu-system.*$C")
  cg=$(awk -F: '$2 == "memory" {print substr($0, index($0, $3))}' "/proc/$qemu/cgroup")
  echo "QEMU's memory cgroup: $cg"
  [[ "$cg" == /test.slice:cri-containerd:* ]]
  [ -d "/sys/fs/cgroup/memory$cg" ]
  cri stopp "$sp" >/dev/null
  cri rmp "$sp" >/dev/null
  [ ! -d "/sys/fs/cgroup/memory$cg" ]
  no_leaks
}
