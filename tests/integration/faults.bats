#!/usr/bin/env bats
# Faults survived, load held, bad input refused, nothing leaked, nothing
# escapes: each test breaks something on purpose and checks the host is
# left exactly as before.

bats_require_minimum_version 1.5.0 # run ! and run -N

load helpers
load containerd

setup() { setup_hull; }
teardown() {
  local rc=0
  if [ -f "$T/ctrd/containerd.pid" ]; then
    shim_teardown "$T/ctrd" || rc=1
    stop_containerd "$T/ctrd"
  fi
  teardown_hull || rc=1
  return "$rc"
}

# The containerd shim's faults run on a private containerd under $T.
RT=io.containerd.hull.v2
IMG=docker.io/library/hull-busybox:latest
sc() { containerd_ctr "$T/ctrd" "$@"; }
shim_containerd() {
  mkdir -p "$T/ctrd"
  cp "$HULL_CONFIG" "$T/ctrd/hull.toml"
  start_containerd "$T/ctrd" "${HULL_CONTAINERD:-1}"
  import_busybox "$T/ctrd"
}
# wait_task ID STATUS: until ctr lists the task in that status, 20 s at most.
wait_task() {
  for _ in $(seq 1 100); do sc task ls | grep -Eq "^$1 .*$2" && return 0; sleep 0.2; done
  sc task ls >&2
  return 1
}

@test "kill -9 of QEMU while a container runs: the proxy exits with an error, state says stopped, delete cleans" {
  B=$T/b; make_bundle "$B" sleep 600
  hull run --bundle "$B" c1 </dev/null >/dev/null 2>&1 &
  runner=$!
  wait_status c1 running
  qemu=$(sandbox_info c1 qemuPid)
  kill -9 "$qemu"
  rc=0; wait "$runner" || rc=$?
  [ "$rc" -ne 0 ]
  assert_no_leak

  B2=$T/b2; make_bundle "$B2" sleep 600
  hull create --bundle "$B2" --pid-file "$T/pid" c2 </dev/null >/dev/null 2>&1
  pid=$(cat "$T/pid")
  hull start c2
  kill -9 "$(sandbox_info c2 qemuPid)"
  wait_status c2 stopped
  exited "$pid"
  hull delete c2
  assert_no_leak
}

@test "kill -9 of the sandbox monitor: no orphan QEMU, the container stops, delete cleans" {
  B=$T/b; make_bundle "$B" sleep 600
  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  hull start c1
  qemu=$(sandbox_info c1 qemuPid)
  [ "$qemu" -gt 0 ]
  kill -9 "$(sandbox_info c1 monitorPid)"
  for _ in $(seq 1 100); do exited "$qemu" && break; sleep 0.1; done
  exited "$qemu"
  wait_status c1 stopped
  hull delete c1
  assert_no_leak
}

@test "kill -9 of virtiofsd: the sandbox ends and says why, the container stops, delete cleans" {
  HULL_SHARED_FS=virtio-fs write_config "$T/hull-virtiofs.toml"
  B=$T/b; make_bundle "$B" sleep 600
  "$HULL_BIN" --root "$ROOT" --log "$T/hull.log" create --bundle "$B" --pid-file "$T/pid" c1 </dev/null >/dev/null 2>&1
  pid=$(cat "$T/pid")
  hull start c1
  qemu=$(sandbox_info c1 qemuPid)
  # The sandboxed child serves; its parent only waits for it.
  kill -9 "$(pgrep -P "$(sandbox_info c1 virtiofsd.pid)")"
  wait_status c1 stopped
  exited "$pid"
  for _ in $(seq 1 100); do exited "$qemu" && break; sleep 0.1; done
  exited "$qemu"
  grep "sandbox died" "$T/hull.log" | grep -q "virtiofsd exited"
  hull delete c1
  assert_no_leak
}

@test "the agent crashes (a guest panic): detected, reported in the log, cleaned" {
  # Without a PID namespace the container shares the guest's, where the
  # agent is PID 1; SIGABRT crashes it, and the kernel panics.
  B=$T/b; make_bundle "$B" sh -c 'kill -TERM 1; sleep 1; echo agent-survived-term; sleep 2; kill -ABRT 1; sleep 600'
  edit_spec "$B" 'del(.linux.namespaces[] | select(.type == "pid"))'
  run "$HULL_BIN" --root "$ROOT" --log "$T/hull.log" run --bundle "$B" c1 </dev/null
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *agent-survived-term* ]]
  grep "sandbox died" "$T/hull.log" | grep -q "agent connection lost\|qemu exited"
  # The report carries the guest console's last words: the agent's crash.
  grep "sandbox died" "$T/hull.log" | grep -q "guest console ends with"
  assert_no_leak
}

@test "oversized and climbing input: a huge config.json, annotations and env, and mount destinations with .." {
  # 10 MiB of config.json (an annotation of 10 MiB): refused, clearly.
  B=$T/big; make_bundle "$B" true
  head -c $((10 << 20)) /dev/zero | tr '\0' a > "$T/blob"
  jq --rawfile blob "$T/blob" '.annotations = {"big": $blob}' "$B/config.json" > "$T/c.json" && mv "$T/c.json" "$B/config.json"
  [ "$(stat -c %s "$B/config.json")" -gt $((10 << 20)) ]
  run hull create --bundle "$B" big </dev/null
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *"too large"* ]]
  assert_no_leak

  # 2,000 environment variables and 1 MiB of annotations: handled.
  B=$T/env
  # shellcheck disable=SC2016 # $V1999 expands in the guest
  make_bundle "$B" sh -c 'echo "$V1999"; echo ok-env'
  jq --rawfile blob <(head -c $((1 << 20)) "$T/blob") \
    '.process.env += [range(0; 2000) | "V\(.)=value-\(.)"] | .annotations = {"a": $blob}' "$B/config.json" > "$T/c.json" && mv "$T/c.json" "$B/config.json"
  run hull run --bundle "$B" env1 </dev/null
  [ "$status" -eq 0 ]
  [[ "$output" == *value-1999* ]]

  # A mount destination climbing out of the rootfs lands inside it.
  mkdir -p "$T/vol"; echo vol-data > "$T/vol/f"
  B=$T/climb; make_bundle "$B" sh -c 'cat /etc/climbed/f; ls /'
  edit_spec "$B" ".mounts += [{destination: \"/../../../etc/climbed\", type: \"bind\", source: \"$T/vol\", options: [\"rbind\", \"ro\"]}]"
  run hull run --bundle "$B" climb </dev/null
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *vol-data* ]]
  [ ! -e /etc/climbed ]
  assert_no_leak
}

# create_killed_at NAME CONDITION: starts a create, SIGKILLs it once
# CONDITION (a shell test) holds, then checks list and delete --force.
create_killed_at() {
  local id=$1 cond=$2
  B=$T/$id; make_bundle "$B" sleep 600
  "$HULL_BIN" --root "$ROOT" create --bundle "$B" "$id" </dev/null >/dev/null 2>&1 &
  local creator=$!
  local i
  for i in $(seq 1 600); do eval "$cond" && break; sleep 0.05; done
  eval "$cond"
  kill -9 "$creator"
  wait "$creator" || true
  [[ "$(hull list -q)" == *"$id"* ]]
  hull delete --force "$id"
  run ! hull state "$id"
  assert_no_leak
}

# shellcheck disable=SC2016 # create_killed_at evals each condition later
@test "hull killed in the middle of create, at each step: list sees it, delete --force cleans it" {
  create_killed_at k1 '[ -d "$ROOT/containers/k1" ]'
  create_killed_at k2 '[ -f "$ROOT/netns/k2" ]'
  create_killed_at k3 'pgrep -f -- "__monitor --id k3" >/dev/null'
  create_killed_at k4 'pgrep -f -- "qemu-system.*$ROOT" >/dev/null'
  create_killed_at k5 'ls "$ROOT"/sandboxes/*/monitor.sock >/dev/null 2>&1'
}

@test "the disk under the state dir full: a clear error, nothing left" {
  mkdir -p "$T/small"
  mount -t tmpfs -o size=256k tmpfs "$T/small"
  dd if=/dev/zero of="$T/small/fill" bs=4k count=1000 2>/dev/null || true
  B=$T/b; make_bundle "$B" true
  run "$HULL_BIN" --root "$T/small/root" create --bundle "$B" c1 </dev/null
  umount "$T/small"
  [ "$status" -ne 0 ]
  [[ "$output" == *"no space left on device"* ]]
  assert_no_leak
}

@test "10 concurrent runs, each its own VM, each with its own exit code" {
  for i in $(seq 1 10); do make_bundle "$T/r$i" sh -c "exit $i"; done
  run_ten r
  assert_no_leak
}

# pod_app DIR ID ARGS...: an app container of pod "pod" (CRI-O annotations).
pod_app() {
  local dir=$1 id=$2; shift 2
  make_bundle "$dir" "$@"
  edit_spec "$dir" "(.linux.namespaces[] | select(.type == \"network\")).path = \"$ROOT/netns/pod\"
    | .annotations = {\"io.kubernetes.cri-o.ContainerType\": \"container\", \"io.kubernetes.cri-o.SandboxID\": \"pod\"}"
}

snapshot() {
  echo "processes $(pgrep -f -- "$T" | wc -l)"
  echo "mounts $(grep -cF -- "$T" /proc/self/mountinfo)"
  echo "files $(find "$ROOT" | wc -l)"
  echo "monitor-fds $(find /proc/"$(sandbox_info pod monitorPid)"/fd -mindepth 1 | wc -l)"
  echo "qemu-fds $(find /proc/"$(sandbox_info pod qemuPid)"/fd -mindepth 1 | wc -l)"
  # The test's own network namespaces (pinned under $T): /run/netns is
  # every suite's and every CNI's on the machine.
  echo "netns $(grep -F -- "$T" /proc/self/mountinfo | grep -c ' nsfs ')"
}

# virtiofsd_fds: how many files the pod's virtiofsd (its sandboxed child)
# holds open; 0 over 9p. It holds one for each inode the guest caches, so
# a guest that kept removed containers cached would pin their rootfs.
virtiofsd_fds() {
  local parent
  parent=$(sandbox_info pod virtiofsd.pid)
  if [ "$parent" = null ]; then echo 0; return; fi
  find /proc/"$(pgrep -P "$parent")"/fd -mindepth 1 | wc -l
}

@test "a pod under load: 10 concurrent runs in one VM, then 100 create/start/delete cycles leave the host as before" {
  B=$T/pause; make_bundle "$B" sleep 600
  edit_spec "$B" '.annotations = {"io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.cri-o.SandboxID": "pod"}'
  hull create --bundle "$B" pod </dev/null >/dev/null 2>&1
  hull start pod
  for i in $(seq 1 10); do pod_app "$T/a$i" "a$i" sh -c "exit $i"; done
  run_ten a
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 1 ]
  [ "$(hull list -q)" = pod ]

  pod_app "$T/cycle" cyc true
  before=$(snapshot)
  fsd_before=$(virtiofsd_fds)
  for i in $(seq 1 100); do
    hull create --bundle "$T/cycle" "cyc$i" </dev/null >/dev/null 2>&1
    hull start "cyc$i"
    wait_status "cyc$i" stopped
    hull delete "cyc$i"
  done
  after=$(snapshot)
  fsd_after=$(virtiofsd_fds)
  echo "before: $before"; echo "after: $after"
  echo "virtiofsd fds: $fsd_before before, $fsd_after after"
  [ "$before" = "$after" ]
  # At most the last removed container is still held (the guest lets go of
  # it at the next create).
  [ "$fsd_after" -le "$fsd_before" ]
  hull delete --force pod
  assert_no_leak
}

@test "symlinks planted in the rootfs or a volume cannot reach host files" {
  echo host-secret > "$T/secret"
  mkdir -p "$T/vol"
  B=$T/b
  # shellcheck disable=SC2016 # the workload's shell expands $l
  make_bundle "$B" sh -c '
    ln -s / /data/root; ln -s '"$T"'/secret /data/abs; ln -s ../../../../../../../../../'"$T"'/secret /data/up
    ln -s '"$T"'/secret /vol/abs; ln -s ../../../../../../../../'"$T"' /vol/updir
    for l in /data/abs /data/up /vol/abs /vol/updir/secret; do cat "$l" 2>/dev/null && echo "LEAK via $l"; done
    echo overwrite > /data/abs 2>/dev/null; echo overwrite > /vol/abs 2>/dev/null
    ls /data/root/ | grep -q proc && echo root-is-the-container
    true'
  edit_spec "$B" ".mounts += [{destination: \"/vol\", type: \"bind\", source: \"$T/vol\", options: [\"rbind\", \"rw\"]}]"
  run hull run --bundle "$B" c1
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" != *LEAK* ]]
  [[ "$output" == *root-is-the-container* ]]
  [ "$(cat "$T/secret")" = host-secret ]
  # The links exist on the host as links, pointing nowhere useful.
  [ -L "$T/vol/abs" ]
  assert_no_leak
}

@test "the guest cannot unmount the host's mounts under a volume's source" {
  local kind
  # A directory or file that is a mount point on the host can be removed
  # from a mount namespace where it is not one (virtiofsd's), and that
  # detaches the host's mount. The container stands in for a guest that
  # ignores its own mounts: it unmounts what it can, then removes and
  # renames the mount points. One container per kind of bind: a share that
  # holds another kind's copy of the source would hide a failure.
  echo host-file > "$T/hostfile"
  mkdir -p "$T/src/dir"; touch "$T/src/file"
  mount -t tmpfs guard "$T/src/dir"
  mount --bind "$T/hostfile" "$T/src/file"
  for kind in bind rbind; do
    B=$T/b-$kind; make_bundle "$B" sh -c 'umount /v/dir; umount /v/dir; umount /v/file; umount /v/file
      rmdir /v/dir; mv /v/dir /v/moved; rm -f /v/file; mv /v/file /v/moved-file; echo done'
    edit_spec "$B" ".process.capabilities |= with_entries(.value += [\"CAP_SYS_ADMIN\"])
      | .mounts += [{destination: \"/v\", type: \"bind\", source: \"$T/src\", options: [\"$kind\"]}]"
    run hull run --bundle "$B" "c-$kind"
    echo "$kind: $output"
    [ "$status" -eq 0 ]
    [[ "$output" == *done* ]]
    mountpoint -q "$T/src/dir"
    mountpoint -q "$T/src/file"
    [ "$(cat "$T/src/file")" = host-file ]
  done
  umount "$T/src/dir" "$T/src/file"
  assert_no_leak
}

@test "the guest sees only the share; state 0700, sockets 0600; --log never holds the environment" {
  B=$T/b; make_bundle "$B" sleep 600
  mkdir -p "$T/rovol"
  edit_spec "$B" '.process.env += ["HULL_TEST_SECRET=do-not-log-me"]'
  edit_spec "$B" ".mounts += [{destination: \"/rovol\", type: \"bind\", source: \"$T/rovol\", options: [\"rbind\", \"ro\"]}]"
  "$HULL_BIN" --root "$ROOT" --debug --log "$T/hull.log" create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  "$HULL_BIN" --root "$ROOT" --debug --log "$T/hull.log" start c1
  sb=$(ls -d "$ROOT"/sandboxes/*/)
  [ "$(stat -c %a "$ROOT")" = 700 ]
  [ "$(stat -c %a "$sb")" = 700 ]
  for s in qmp.sock agent.sock monitor.sock; do
    [ "$(stat -c %a "$sb/$s")" = 600 ] || { echo "$s: $(stat -c %a "$sb/$s")" >&2; false; }
  done
  # QEMU exports share/shared: no socket and nothing of the sandbox dir.
  [ -z "$(find "$sb/share/shared/" -type s)" ]
  [ "$(ls "$sb/share/shared")" = c1 ]
  # A read-only volume is read-only in the export too, where the guest
  # reaches it, not only in hull's own view of the share.
  rovol=$(basename "$sb"/share/shared/c1/volumes/*-rovol)
  [ -d "$sb/share/shared/c1/volumes/$rovol" ]
  run ! touch "$sb/share/shared/c1/volumes/$rovol/planted"
  [[ "$output" == *"Read-only file system"* ]]
  run hull exec c1 sh -c 'ls /run/hull 2>&1; cat /proc/mounts | grep -c 9p'
  [[ "$output" != *qmp* ]]
  # Over virtio-fs, virtiofsd serves the export from a mount namespace of
  # its own whose root is the export alone: read-only at the top, with c1's
  # rootfs, bound after virtiofsd started, there by propagation.
  if [ "$(shared_fs)" = virtio-fs ]; then
    fsd=$(pgrep -P "$(jq -r .virtiofsd.pid "$sb/sandbox.json")")
    [ "$(readlink "/proc/$fsd/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]
    [ "$(ls "/proc/$fsd/root/")" = c1 ]
    [ -x "/proc/$fsd/root/c1/rootfs/bin/busybox" ]
    run ! touch "/proc/$fsd/root/planted"
    [[ "$output" == *"Read-only file system"* ]]
    run ! touch "/proc/$fsd/root/c1/volumes/$rovol/planted"
    [[ "$output" == *"Read-only file system"* ]]
  fi
  [ -z "$(ls "$T/rovol")" ]
  run -1 grep -q do-not-log-me "$T/hull.log"
  hull delete --force c1
  run -1 grep -q do-not-log-me "$T/hull.log"
}

@test "hull check reports each requirement with a reason" {
  run hull check
  echo "$output"
  [ "$status" -eq 0 ]
  for what in qemu virtiofsd kvm "guest kernel" "guest image" "agent version" vhost-vsock tun cgroups "cgroup driver" memory; do
    [[ "$output" == *"$what"* ]]
  done
  [[ "$output" == *"QEMU emulator version"* ]]
  [[ "$output" == *"guest-root (directory, shared read-only over 9p)"* ]]
  # The same guest as an initrd: the agent version is read from the archive.
  HULL_INITRD=$BUILD/initrd-hull.img write_config "$T/hull-initrd.toml"
  run hull check
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"initrd-hull.img ("* ]]
  [[ "$output" == *"guest agent matches hull"* ]]
}

@test "containerd restarted while the shim's container runs: it keeps running, containerd reconnects to the shim" {
  shim_containerd
  sc run -d --runtime "$RT" "$IMG" r1 sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  qemu=$(pgrep -f "qemu-system.*$T")
  shim=$(pgrep -f "containerd-shim-hull-v2 .*$T")
  stop_containerd "$T/ctrd"
  [ "$(pgrep -f "containerd-shim-hull-v2 .*$T")" = "$shim" ]
  start_containerd "$T/ctrd" "${HULL_CONTAINERD:-1}"
  wait_task r1 RUNNING
  run sc task exec --exec-id e1 r1 echo back
  [ "$output" = back ]
  [ "$(pgrep -f "qemu-system.*$T")" = "$qemu" ]
  # Its exit still reaches the new containerd, as an event.
  sc task kill r1
  wait_task r1 STOPPED
  run sc task delete r1
  [ "$status" -eq 0 ]
  sc containers rm r1
}

@test "the shim killed with SIGKILL: its QEMU goes, containerd's delete leaves nothing" {
  shim_containerd
  sc run -d --runtime "$RT" "$IMG" k1 sleep 600
  qemu=$(pgrep -f "qemu-system.*$T")
  kill -9 "$(pgrep -f "containerd-shim-hull-v2 .*$T")"
  for _ in $(seq 1 100); do exited "$qemu" && break; sleep 0.1; done
  exited "$qemu"
  # containerd sees its shim gone and runs `containerd-shim-hull-v2 delete`,
  # which undoes the pod; the task is then stopped, or gone.
  for _ in $(seq 1 100); do sc task ls | grep -q '^k1 .*RUNNING' || break; sleep 0.2; done
  sc task delete k1 >/dev/null 2>&1 || true
  sc containers rm k1
  [ -z "$(shim_leaks "$T/ctrd")" ]
}

@test "QEMU killed: every container of the pod gets a TaskExit with a non-zero status, the pod is removed cleanly" {
  shim_containerd
  sandbox=(--annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=p1)
  app=(--annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=p1)
  sc events > "$T/events" &
  events=$!
  sc run -d --runtime "$RT" "${sandbox[@]}" "$IMG" p1 sleep 600
  sc run -d --runtime "$RT" "${app[@]}" "$IMG" a1 sleep 600
  # One pod: one shim, one QEMU.
  [ "$(pgrep -fc "containerd-shim-hull-v2 .*$T")" = 1 ]
  [ "$(pgrep -fc "qemu-system.*$T")" = 1 ]
  # The subscription is live once it has seen a1 start.
  for _ in $(seq 1 50); do grep -q '/tasks/start.*"a1"' "$T/events" && break; sleep 0.1; done
  grep -q '/tasks/start.*"a1"' "$T/events"
  kill -9 "$(pgrep -f "qemu-system.*$T")"
  wait_task a1 STOPPED
  wait_task p1 STOPPED
  for _ in $(seq 1 50); do [ "$(grep -c '/tasks/exit' "$T/events")" -ge 2 ] && break; sleep 0.2; done
  kill "$events"
  for id in p1 a1; do
    grep "/tasks/exit" "$T/events" | grep "\"container_id\":\"$id\"" | grep -q '"exit_status":255'
  done
  for id in a1 p1; do
    sc task delete "$id" >/dev/null
    sc containers rm "$id"
  done
}
