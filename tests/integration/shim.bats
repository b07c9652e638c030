#!/usr/bin/env bats
# containerd-shim-hull-v2 through ctr: containerd with a private config and
# root, the shim found on its PATH, `ctr run --runtime io.containerd.hull.v2`.
# HULL_CONTAINERD picks containerd 1 (Debian's 1.6, the default) or 2.

bats_require_minimum_version 1.5.0 # run --separate-stderr

load helpers
load containerd

setup_file() {
  require_host
  C=$(mktemp -d /tmp/hull-shim.XXXXXX)
  export C
  start_containerd "$C" "${HULL_CONTAINERD:-1}"
  CTR="$(containerd_bindir "${HULL_CONTAINERD:-1}")/ctr -a $C/containerd.sock -n $(cat "$C/namespace")"
  export CTR
  import_busybox "$C"
}

teardown_file() {
  [ -n "${C:-}" ] || return 0
  stop_containerd "$C"
  kill_and_unmount "$C"
  rm -rf "$C"
}

teardown() { shim_teardown "$C"; }

c() { containerd_ctr "$C" "$@"; }

IMG=docker.io/library/hull-busybox:latest
RT=io.containerd.hull.v2

@test "ctr run: the container runs in a VM, with its exit code" {
  run --separate-stderr c run --runtime "$RT" --rm "$IMG" shim-k uname -r
  [ "$status" -eq 0 ]
  [ -n "$output" ]
  [ "$output" != "$(uname -r)" ]
  run c run --runtime "$RT" --rm "$IMG" shim-x sh -c 'echo out; echo err >&2; exit 3'
  [ "$status" -eq 3 ]
  [[ "$output" == *out* ]]
  [[ "$output" == *err* ]]
}

@test "a tty: the process sees a terminal of the size ctr gives it" {
  # ctr resizes the terminal once the task has started: wait for it.
  run script -qec "stty rows 33 cols 111; $CTR run -t --runtime $RT --rm $IMG shim-t sh -c 'tty; for i in \$(seq 50); do s=\$(stty size); [ \"\$s\" != \"0 0\" ] && break; sleep 0.1; done; echo \$s'" /dev/null
  [ "$status" -eq 0 ]
  [[ "$output" == */dev/pts/* ]]
  [[ "$output" == *"33 111"* ]]
}

@test "exec with and without stdin, exit codes, ps, metrics, pause, resume, kill" {
  c run -d --runtime "$RT" "$IMG" shim-d sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  run --separate-stderr c task exec --exec-id e1 shim-d uname -r
  [ "$status" -eq 0 ]
  [ "$output" != "$(uname -r)" ]
  run bash -c "printf 'line one\nline two\n' | $CTR task exec --exec-id e2 shim-d sh -c 'cat; echo done' 2>$C/e2.err"
  [ "$status" -eq 0 ]
  [ "$output" = "$(printf 'line one\nline two\ndone')" ]
  run c task exec --exec-id e3 shim-d sh -c 'exit 7'
  [ "$status" -eq 7 ]
  # ps: the guest's PIDs of the container's processes.
  run --separate-stderr c task ps shim-d
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -ge 2 ]
  # metrics: the guest cgroup's counters.
  run --separate-stderr c task metrics --format json shim-d
  [ "$status" -eq 0 ]
  mem=$(jq -r '.memory.usage.usage // .memory.usage' <<<"$output")
  pids=$(jq -r '.pids.current' <<<"$output")
  cpu=$(jq -r '.cpu.usage.total' <<<"$output")
  [ "$mem" -gt 0 ]
  [ "$pids" -ge 1 ]
  [ "$cpu" -gt 0 ]
  c task pause shim-d
  run --separate-stderr c task ls
  [[ "$output" == *shim-d*PAUSED* ]]
  c task resume shim-d
  run --separate-stderr c task ls
  [[ "$output" == *shim-d*RUNNING* ]]
  # SIGTERM, which the container traps: it exits 0.
  c task kill shim-d
  for _ in $(seq 1 50); do c task ls | grep -q 'shim-d.*STOPPED' && break; sleep 0.2; done
  run --separate-stderr c task ls
  [[ "$output" == *shim-d*STOPPED* ]]
  run c task delete shim-d
  [ "$status" -eq 0 ]
  c containers rm shim-d
}

@test "kill --all and SIGKILL: exit 137" {
  c run -d --runtime "$RT" "$IMG" shim-kk sh -c 'sleep 600 & sleep 600'
  c task kill -a -s KILL shim-kk
  for _ in $(seq 1 50); do c task ls | grep -q 'shim-kk.*STOPPED' && break; sleep 0.2; done
  run c task delete shim-kk
  [ "$status" -eq 0 ]
  [[ "$output" == *137* ]] || c task ls >&2
  c containers rm shim-kk
}

@test "a container over its memory limit is OOM-killed: exit 137 and a TaskOOM event" {
  c events > "$C/events.log" &
  ev=$!
  # shellcheck disable=SC2016 # $x expands in the guest
  run c run --runtime "$RT" --rm --memory-limit 33554432 "$IMG" shim-oom sh -c 'x=a; while :; do x=$x$x; done'
  kill "$ev"
  [ "$status" -eq 137 ]
  grep -q '/tasks/oom.*shim-oom' "$C/events.log"
}

@test "one shim and one QEMU per container, no monitor or proxy; hull list shows it, and leaves it alone" {
  c run -d --runtime "$RT" "$IMG" shim-l1 sleep 600 >/dev/null
  c run -d --runtime "$RT" "$IMG" shim-l2 sleep 600 >/dev/null
  [ "$(pgrep -fc -- "containerd-shim-hull-v2 .*$C")" = 2 ]
  [ "$(pgrep -fc -- "qemu-system.*$C")" = 2 ]
  # Under HULL_TEMPLATE both are clones of the template.
  [ -z "${HULL_TEMPLATE:-}" ] || [ "$(template_clones "$C")" = 2 ]
  # The shims' only children are QEMU and virtiofsd: no hull CLI, monitor
  # or proxy.
  for shim in $(pgrep -f -- "containerd-shim-hull-v2 .*$C"); do
    for child in $(pgrep -P "$shim"); do
      comm=$(cat "/proc/$child/comm")
      [[ "$comm" == qemu-system-* || "$comm" == virtiofsd ]] || { echo "shim $shim runs $comm" >&2; return 1; }
    done
  done
  export HULL_SHIM_ROOT=$C/shim-root
  run "$HULL_BIN" --root "$C/hull-root" list
  [ "$status" -eq 0 ]
  [[ "$output" == *SANDBOX* ]]
  [[ "$output" == *shim-l1*running*shim-l1* ]]
  [[ "$output" == *shim-l2*running*shim-l2* ]]
  run "$HULL_BIN" --root "$C/hull-root" state shim-l1
  [ "$status" -eq 0 ]
  [ "$(jq -r .status <<<"$output")" = running ]
  [ "$(jq -r .frontend <<<"$output")" = containerd-shim-hull-v2 ]
  [ "$(jq -r .sandbox <<<"$output")" = shim-l1 ]
  for op in "kill shim-l1 KILL" "delete --force shim-l1" "pause shim-l1" "start shim-l1" "exec shim-l1 true"; do
    # shellcheck disable=SC2086
    run "$HULL_BIN" --root "$C/hull-root" $op
    [ "$status" -ne 0 ]
    [[ "$output" == *"containerd-shim-hull-v2 runs shim-l1"* ]]
  done
  run --separate-stderr c task ls
  [[ "$output" == *shim-l1*RUNNING* ]]
  for t in shim-l1 shim-l2; do
    c task kill -s KILL "$t"
    for _ in $(seq 1 50); do c task ls | grep -q "$t.*STOPPED" && break; sleep 0.2; done
    c task delete "$t" >/dev/null
    c containers rm "$t"
  done
  run "$HULL_BIN" --root "$C/hull-root" list -q
  [ -z "$output" ]
}

@test "the runtime options' ConfigPath selects the hull configuration" {
  # The same configuration but for the guest's memory: 384 MiB, not 256.
  sed 's/^default_memory = .*/default_memory = 384/' "$C/hull.toml" > "$C/hull-384.toml"
  grep -q '^default_memory = 384' "$C/hull-384.toml"
  run --separate-stderr c run --runtime "$RT" --runtime-config-path "$C/hull-384.toml" --rm "$IMG" shim-cfg sh -c 'grep MemTotal /proc/meminfo'
  [ "$status" -eq 0 ]
  kib=$(awk '{print $2}' <<<"$output")
  [ "$kib" -gt $((300 * 1024)) ]
  run --separate-stderr c run --runtime "$RT" --rm "$IMG" shim-cfg sh -c 'grep MemTotal /proc/meminfo'
  kib=$(awk '{print $2}' <<<"$output")
  [ "$kib" -lt $((256 * 1024)) ]
}
