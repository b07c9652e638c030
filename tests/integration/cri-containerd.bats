#!/usr/bin/env bats
# Kubernetes through containerd's CRI, crictl as the kubelet: a private
# containerd (containerd.bash), 1.6 or 2.x as HULL_CONTAINERD says (1, the
# default, or 2), its pods on the CRI handler HULL_CRI_HANDLER names:
#
#   hull     (the default) containerd's runc shim running the hull CLI,
#            which keeps a monitor per pod and a proxy per process
#   hull-v2  hull's own shim, containerd-shim-hull-v2: one process per pod
#            that owns its VM, no hull CLI, monitor or proxy
#
# CI runs the file once for each pair, e.g.
#   HULL_CRI_HANDLER=hull-v2 HULL_CONTAINERD=2 bats tests/integration/cri-containerd.bats

load helpers
load containerd

HANDLER=${HULL_CRI_HANDLER:-hull}

setup_file() {
  require_host
  [ -x "$CRICTL" ] || { echo "crictl missing (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)" >&2; return 1; }
  case $HANDLER in
    hull | hull-v2) ;;
    *) echo "HULL_CRI_HANDLER: hull or hull-v2, not '$HANDLER'" >&2; return 1 ;;
  esac
  [ "$HANDLER" != hull-v2 ] || [ -x "$BUILD/containerd-shim-hull-v2" ] || { echo "$BUILD/containerd-shim-hull-v2 missing: run make" >&2; return 1; }
  C=$(mktemp -d /tmp/hull-cri.XXXXXX)
  export C
  mkdir -p "$C/logs"
  start_containerd "$C" "${HULL_CONTAINERD:-1}"
  import_cri_images "$C"
}

teardown_file() {
  [ -n "${C:-}" ] || return 0
  remove_pods
  stop_containerd "$C"
  kill_and_unmount "$C"
  ip link del hullcri0 2>/dev/null || true
  rm -rf "$C"
}

# A failed test's pods go through the CRI, so that the next test starts
# without them; what the removal itself leaves, no_leaks still finds.
teardown() {
  kill_port_forwards
  remove_pods
  # The stand-in for a kubelet's pod cgroup, which is the test's to remove.
  rmdir /sys/fs/cgroup/*/hull-cpuq 2>/dev/null || true
}

qemus() { pgrep -fc -- "qemu-system.*$C" || true; }
shims() { pgrep -fc -- "containerd-shim-hull-v2 .*$C" || true; }

# leaks prints what the pods left, on either path: QEMU, virtiofsd, shims
# (hull's and containerd's runc shim), hull's monitors and proxies, mounts
# outside containerd's own root, hull's state (CLI and shim), the pods'
# network namespaces and host cgroups.
leaks() {
  # A shim, monitor or proxy names $C in its --address or --root.
  pgrep -fa -- "(qemu-system|virtiofsd).*$C" | cut -c1-120 | sed 's/^/process /'
  pgrep -fa -- "containerd-shim-(hull|runc)-v2 .*$C" | sed 's/^/shim /'
  pgrep -fa -- "$C/.*__(monitor|proxy) " | sed 's/^/hull /'
  mountinfo_under "$C/" | grep -vF -- "$C/root/" | awk '{print "mount " $5}'
  find "$C/hull-root" -mindepth 1 -not -type d 2>/dev/null | sed 's/^/hull-root /'
  find "$C/hull-root"/*/containers "$C/hull-root"/*/sandboxes -mindepth 1 2>/dev/null | sed 's/^/hull-root /'
  find "$C/shim-root" -mindepth 1 -not -path "$C/shim-root/s" -not -path "$C/shim-root/s/*" 2>/dev/null | sed 's/^/shim-root /'
  find "$C/shim-root/s" -mindepth 1 2>/dev/null | sed 's/^/shim socket /'
  local ns id
  while read -r ns; do [ ! -e "$ns" ] || echo "netns $ns"; done < <(cat "$C/netns.list" 2>/dev/null)
  while read -r id; do
    find /sys/fs/cgroup/*/ -maxdepth 3 -type d -name "*$id*" 2>/dev/null | sed 's/^/cgroup /'
  done < <(cat "$C/ids.list" 2>/dev/null)
  true
}

# no_leaks fails if the pods left anything once they are removed; a process
# gets 10 s to end after the rmp that ended it.
no_leaks() {
  local left _
  for _ in $(seq 1 50); do
    left=$(leaks)
    [ -n "$left" ] || return 0
    sleep 0.2
  done
  echo "LEAKED:" >&2; echo "$left" >&2
  return 1
}

# wait_exited ID: waits (60 s at most) until the container has exited.
wait_exited() {
  local _
  for _ in $(seq 1 300); do
    [ "$(cri inspect "$1" | jq -r .status.state)" = CONTAINER_EXITED ] && return 0
    sleep 0.2
  done
  echo "container $1 never exited: $(cri inspect "$1" | jq -c .status)" >&2
  return 1
}

# stop_pod ID: stopp and rmp.
stop_pod() {
  cri stopp "$1" >/dev/null
  cri rmp "$1" >/dev/null
}

# port_forward POD LOCAL:REMOTE starts crictl port-forward in the
# background and waits until it listens on LOCAL; its PID goes to
# $C/pf.pids (kill_port_forwards ends them).
port_forward() {
  "$CRICTL" --config "$C/crictl.yaml" port-forward "$1" "$2" >>"$C/port-forward.log" 2>&1 3>&- &
  echo $! >> "$C/pf.pids"
  local _
  for _ in $(seq 1 100); do
    [ -z "$(ss -Hltn "sport = :${2%%:*}")" ] || return 0
    sleep 0.1
  done
  echo "crictl port-forward $2 never listened:" >&2; cat "$C/port-forward.log" >&2
  return 1
}

kill_port_forwards() {
  local p _
  [ -f "$C/pf.pids" ] || return 0
  while read -r p; do kill "$p" 2>/dev/null || true; done < "$C/pf.pids"
  while read -r p; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done < "$C/pf.pids"
  rm -f "$C/pf.pids"
}

@test "a pod with two containers: one VM, same guest kernel, localhost between them, logs, exec" {
  p=$(pod p1)
  [ "$(qemus)" = 1 ]
  web=$(ctr_in "$p" p1 web sh -c 'echo web-started; uname -r; httpd -f -p 8080 -h /www')
  client=$(ctr_in "$p" p1 client sh -c 'uname -r; sleep 600')
  [ "$(qemus)" = 1 ]
  # Under HULL_TEMPLATE (with one NIC) the pod's VM is a clone.
  [ -z "${HULL_TEMPLATE:-}" ] || [ "$(template_clones "$C")" = 1 ]
  if [ "$HANDLER" = hull ]; then
    # The CLI's pod: one monitor, a proxy for each of its three containers
    # (the pause container's included).
    [ "$(pgrep -fc -- "$C/.*__monitor ")" = 1 ]
    [ "$(pgrep -fc -- "$C/.*__proxy ")" = 3 ]
  else
    [ "$(shims)" = 1 ]
  fi
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
  stop_pod "$p"
  no_leaks
}

@test "a pod of two containers in one VM: one shim process and one QEMU for the pod, and no hull CLI, monitor or proxy process" {
  [ "$HANDLER" = hull-v2 ] || skip "the hull handler runs the hull CLI under containerd's runc shims, with a monitor per pod and a proxy per process by design"
  p=$(pod a)
  web=$(ctr_in "$p" a web sh -c 'echo web-started; httpd -f -p 8080 -h /www')
  client=$(ctr_in "$p" a client sh -c 'echo client-started; sleep 600')
  [ "$(shims)" = 1 ]
  [ "$(qemus)" = 1 ]
  run pgrep -fa -- "$C/.*__(monitor|proxy) "
  [ "$status" -eq 1 ]
  run pgrep -fa -- "^$HULL_BIN "
  [ "$status" -eq 1 ]
  run find "$C/hull-root" -mindepth 1 -not -type d
  [ -z "$output" ]
  # Every task of the pod goes by its QEMU's PID.
  qemu=$(pgrep -f -- "qemu-system.*$C")
  [ "$(cri inspect "$web" | jq -r .info.pid)" = "$qemu" ]
  [ "$(cri inspect "$client" | jq -r .info.pid)" = "$qemu" ]
  for _ in $(seq 1 20); do
    out=$(cri exec -s "$client" wget -qO- http://127.0.0.1:8080/ 2>&1) && break; sleep 0.5
  done
  [ "$out" = "hello from the pod" ]
  run cri logs "$web"
  [[ "$output" == *web-started* ]]
  run cri logs "$client"
  [[ "$output" == *client-started* ]]
  run cri exec -s "$web" cat /www/index.html
  [ "$output" = "hello from the pod" ]
  # crictl exits 1 on any failed exec; the exit code is in its message.
  run "$CRICTL" --config "$C/crictl.yaml" exec -s "$client" sh -c 'exit 5'
  [ "$status" -ne 0 ]
  [[ "$output" == *"exited with 5"* ]]
  # The guest cgroup's counters, through the shim's Stats.
  run cri stats -o json --id "$web"
  [ "$status" -eq 0 ]
  mem=$(jq -r '.stats[0].memory.workingSetBytes.value // 0' <<<"$output")
  cpu=$(jq -r '.stats[0].cpu.usageCoreNanoSeconds.value // 0' <<<"$output")
  echo "web: memory working set $mem, CPU $cpu ns"
  [ "$mem" -gt 0 ]
  [ "$cpu" -gt 0 ]
  [ "$(shims)" = 1 ]
  [ "$(qemus)" = 1 ]
  stop_pod "$p"
  no_leaks
}

@test "three pods side by side: three VMs, each its own, all cleaned" {
  local pods=() boxes=()
  for n in 1 2 3; do
    pods[n]=$(pod "q$n")
    boxes[n]=$(ctr_in "${pods[$n]}" "q$n" "box$n" sh -c "echo q$n > /tmp/me; sleep 600")
  done
  [ "$(qemus)" = 3 ]
  if [ "$HANDLER" = hull-v2 ]; then [ "$(shims)" = 3 ]; fi
  for n in 1 2 3; do
    run cri exec -s "${boxes[$n]}" cat /tmp/me
    [ "$output" = "q$n" ]
  done
  for n in 1 2 3; do stop_pod "${pods[$n]}"; done
  no_leaks
}

@test "exec -i: stdin reaches the process and its end ends it" {
  p=$(pod in)
  box=$(ctr_in "$p" in box sleep 600)
  run bash -c "echo hi | '$CRICTL' --config '$C/crictl.yaml' exec -i '$box' cat"
  [ "$status" -eq 0 ]
  [ "$output" = hi ]
  run bash -c "printf 'one\ntwo\n' | '$CRICTL' --config '$C/crictl.yaml' exec -i '$box' sh -c 'wc -l; echo done'"
  [ "$status" -eq 0 ]
  [ "$output" = "$(printf '2\ndone')" ]
  stop_pod "$p"
  no_leaks
}

@test "a container that exceeds its memory limit shows OOMKilled and exit code 137 in crictl inspect" {
  p=$(pod oom)
  cat > "$C/hog.json" <<JSON
{"metadata": {"name": "hog"}, "image": {"image": "docker.io/library/hull-busybox:latest"},
 "command": ["sh", "-c", "x=a; while :; do x=\$x\$x; done"], "log_path": "hog.log",
 "linux": {"resources": {"memory_limit_in_bytes": 33554432}}}
JSON
  id=$(cri create "$p" "$C/hog.json" "$C/oom-pod.json")
  echo "$id" >> "$C/ids.list"
  cri start "$id" >/dev/null
  wait_exited "$id"
  run cri inspect "$id"
  echo "$output" | jq -c '.status | {exitCode, reason, message}'
  [ "$(jq -r .status.exitCode <<<"$output")" = 137 ]
  # hull-v2 publishes the guest's OOM kill as a TaskOOM before the exit.
  # With the hull handler the OOM killer strikes in the guest, while
  # containerd's runc shim watches the host cgroup of hull's proxy, which
  # never runs short: the kill's SIGKILL (137) is all it sees.
  if [ "$HANDLER" = hull-v2 ]; then
    [ "$(jq -r .status.reason <<<"$output")" = OOMKilled ]
  fi
  stop_pod "$p"
  no_leaks
}

@test "an exec probe that times out leaves no process in the pod" {
  pr=$(pod pr)
  box=$(ctr_in "$pr" pr box sleep 1000)
  # The kubelet's exec probe with a timeout: containerd kills the exec's
  # PID when the time is up (with the hull handler, hull's proxy, which
  # takes its guest process along; with hull-v2, the shim kills the exec in
  # the guest).
  run cri exec --timeout 1 -s "$box" sleep 600
  [ "$status" -ne 0 ]
  wait_ps_without "sleep 600" cri exec -s "$box" ps
  [[ "$output" == *"sleep 1000"* ]]
  stop_pod "$pr"
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
  echo "$id" >> "$C/ids.list"
  cri start "$id" >/dev/null
  wait_exited "$id"
  [ "$(cri inspect "$id" | jq -r .status.exitCode)" = 0 ]
  [ "$(cat "$C/vol-src/out")" = from-the-pod ]
  cri rm "$id" >/dev/null
  stop_pod "$vp"
  grep 'level=error' "$C/containerd.log" | tail -n +"$(( before + 1 ))" >&2 || true
  [ "$(grep -c 'level=error' "$C/containerd.log" || true)" = "$before" ]
  no_leaks
}

@test "a pod whose cgroup parent is test.slice (the systemd form, with the cgroupfs driver) runs and is cleaned" {
  sp=$(pod slice '{"cgroup_parent": "test.slice"}')
  box=$(ctr_in "$sp" slice box sleep 600)
  run cri exec -s "$box" echo in-the-slice
  [ "$output" = in-the-slice ]
  # containerd names the cgroup test.slice:cri-containerd:ID; as runc's
  # cgroupfs driver, hull (CLI or shim) takes it as one directory, and QEMU
  # is in it.
  qemu=$(pgrep -f -- "qemu-system.*$C")
  cg=$(awk -F: '$2 == "memory" {print substr($0, index($0, $3))}' "/proc/$qemu/cgroup")
  echo "QEMU's memory cgroup: $cg"
  [[ "$cg" == /test.slice:cri-containerd:* ]]
  [ -d "/sys/fs/cgroup/memory$cg" ]
  stop_pod "$sp"
  [ ! -d "/sys/fs/cgroup/memory$cg" ]
  no_leaks
}

@test "a pod with a CPU quota: QEMU's host cgroup has it, and a busy guest takes no more host CPU than it allows" {
  # The kubelet gives a pod's resources in its sandbox config, and
  # containerd writes them on the sandbox's spec as sizing annotations;
  # cgroup_parent stands for the kubelet's pod cgroup, which hull never
  # touches.
  cp=$(pod cpuq '{"cgroup_parent": "/hull-cpuq", "resources": {"cpu_period": 100000, "cpu_quota": 20000, "cpu_shares": 512}}')
  ctr_in "$cp" cpuq spin sh -c 'while :; do :; done' >/dev/null
  qemu=$(pgrep -f -- "qemu-system.*$C")
  cg=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print substr($0, index($0, $3))}' "/proc/$qemu/cgroup")
  echo "QEMU's cpu cgroup: $cg"
  [[ "$cg" == /hull-cpuq/* ]]
  [ "$(cat "/sys/fs/cgroup/cpu$cg/cpu.cfs_quota_us")" = 20000 ]
  [ "$(cat "/sys/fs/cgroup/cpu$cg/cpu.cfs_period_us")" = 100000 ]
  [ "$(cat "/sys/fs/cgroup/cpu$cg/cpu.shares")" = 512 ]
  # The CPU time of the pod's whole host cgroup over 5 s: a ratio to the
  # wall time, at most the quota's 0.2 CPU (with slack for the period at
  # the edges), and not nothing, since the guest spins.
  u0=$(cat "/sys/fs/cgroup/cpuacct$cg/cpuacct.usage"); t0=$(date +%s%N)
  sleep 5
  u1=$(cat "/sys/fs/cgroup/cpuacct$cg/cpuacct.usage"); t1=$(date +%s%N)
  pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
  echo "the pod's host CPU: $pct% of one CPU, quota 20%"
  [ "$pct" -le 25 ]
  [ "$pct" -ge 5 ]
  stop_pod "$cp"
  no_leaks
}

@test "crictl port-forward reaches a web server in the pod's VM; a port nothing listens on fails at once" {
  pf=$(pod pf)
  web=$(ctr_in "$pf" pf web httpd -f -p 8080 -h /www)
  for _ in $(seq 1 20); do
    out=$(cri exec -s "$web" wget -qO- http://127.0.0.1:8080/ 2>&1) && break; sleep 0.5
  done
  [ "$out" = "hello from the pod" ]
  # containerd dials localhost:8080 in the pod's network namespace on the
  # host; hull's one rule there sends it to the sandbox's relay.
  ns=$(cri inspectp "$pf" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path')
  run nsenter --net="$ns" iptables -t nat -S OUTPUT
  echo "$output"
  [ "$(grep -c 'hull port-forward' <<<"$output")" = 1 ]
  port_forward "$pf" 18080:8080
  run curl -fsS --max-time 30 http://127.0.0.1:18080/
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "hello from the pod" ]
  # Again over the same forward: each connection is relayed on its own.
  run curl -fsS --max-time 30 http://127.0.0.1:18080/
  [ "$output" = "hello from the pod" ]
  # Nothing listens on port 9 in the guest: containerd's connection is
  # reset, and curl fails at once (empty reply or reset), not by its
  # timeout (28).
  port_forward "$pf" 18081:9
  run curl -sS --max-time 30 http://127.0.0.1:18081/
  echo "curl: $status $output"
  [ "$status" -ne 0 ]
  [ "$status" -ne 28 ]
  # The web server is still served.
  run curl -fsS --max-time 30 http://127.0.0.1:18080/
  [ "$output" = "hello from the pod" ]
  kill_port_forwards
  stop_pod "$pf"
  no_leaks
}
