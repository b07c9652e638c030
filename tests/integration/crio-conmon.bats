#!/usr/bin/env bats
# CRI-O's handler path: conmon 2.1 driven with CRI-O's exact arguments and
# annotations. A pod's sandbox container boots the VM; its app containers
# join it.

load helpers

setup() {
  setup_hull
  command -v conmon >/dev/null || { echo "conmon missing (apt-get install conmon)" >&2; return 1; }
  mkdir -p "$T/exits" "$T/attach"
}

teardown() {
  teardown_hull_rc=0
  teardown_hull || teardown_hull_rc=$?
  remove_pod_netns
  return $teardown_hull_rc
}

# conmon_create ID BUNDLE: what CRI-O runs to create a container.
conmon_create() {
  local id=$1 b=$2
  conmon -b "$b" -c "$id" --exit-dir "$T/exits" -l "$T/$id.log" --log-level debug -n "k8s_$id" \
    -P "$b/conmon-pidfile" -p "$b/pidfile" --persist-dir "$b" -r "$HULL_BIN" \
    --runtime-arg "--root=$ROOT" --socket-dir-path "$T/attach" --syslog -u "$id" </dev/null
  wait_exists "$b/pidfile" 120
}

# pod_bundle DIR SANDBOX_ID TYPE NETNS ARGS...
pod_bundle() {
  local dir=$1 sid=$2 type=$3 ns=$4; shift 4
  make_bundle "$dir" "$@"
  edit_spec "$dir" "(.linux.namespaces[] | select(.type == \"network\")).path = \"$ns\"
    | .annotations = {\"io.kubernetes.cri-o.ContainerType\": \"$type\", \"io.kubernetes.cri-o.SandboxID\": \"$sid\"}"
}

crio() { "$HULL_BIN" --root "$ROOT" "$@"; }

@test "a pod through conmon: sandbox and app container share one VM; exit files; exec; teardown" {
  make_pod_netns 1; ns=$NS
  pod_bundle "$T/pause" pod1 sandbox "$ns" sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  conmon_create pod1 "$T/pause"
  crio start pod1
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 1 ]
  pause_pid=$(cat "$T/pause/pidfile")

  pod_bundle "$T/app" pod1 container "$ns" sh -c 'uname -r; httpd -f -p 8080 -h /www'
  echo "app page" > "$T/app/rootfs/www/index.html"
  edit_spec "$T/app" "(.linux.namespaces[] | select(.type == \"ipc\")).path = \"/proc/$pause_pid/ns/ipc\"
    | (.linux.namespaces[] | select(.type == \"uts\")).path = \"/proc/$pause_pid/ns/uts\""
  conmon_create app1 "$T/app"
  crio start app1
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 1 ]
  wait_file "$T/app1.log" "stdout"
  [ "$(crio state app1 | jq -r .status)" = running ]
  run curl -fs --retry 20 --retry-all-errors --retry-delay 1 http://10.77.1.2:8080/
  [ "$output" = "app page" ]

  # Exec through conmon, as CRI-O's ExecSync.
  jq '.process | .args = ["sh", "-c", "echo exec-out; uname -n; exit 0"]' "$T/app/config.json" > "$T/proc.json"
  conmon -c app1 -n k8s_app1 -r "$HULL_BIN" -p "$T/exec.pid" -e -l "$T/exec.log" \
    --socket-dir-path "$T/attach" --log-level debug --sync \
    --exec-process-spec "$T/proc.json" --runtime-arg "--root=$ROOT" </dev/null
  wait_file "$T/exec.log" exec-out
  # The app shares the sandbox's UTS namespace: the same hostname.
  pause_host=$(crio exec pod1 uname -n)
  grep -q "$pause_host" "$T/exec.log"

  # Stopping the app leaves the pod; its exit file holds its status.
  crio kill app1 KILL
  wait_exists "$T/exits/app1" 30
  [ "$(cat "$T/exits/app1")" = 137 ]
  crio delete app1
  [ "$(crio state pod1 | jq -r .status)" = running ]
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 1 ]

  crio kill pod1 TERM
  wait_exists "$T/exits/pod1" 30
  [ "$(cat "$T/exits/pod1")" = 0 ]
  crio delete pod1
  assert_no_leak
}

@test "a container's exit status reaches conmon's exit file" {
  make_pod_netns 2; ns=$NS
  pod_bundle "$T/b" solo sandbox "$ns" sh -c 'exit 3'
  conmon_create solo "$T/b"
  crio start solo
  wait_exists "$T/exits/solo" 30
  [ "$(cat "$T/exits/solo")" = 3 ]
  crio delete solo
  assert_no_leak
}

@test "three pods side by side: three VMs, no cross-talk, all cleaned" {
  for n in 1 2 3; do
    make_pod_netns $n; ns=$NS
    pod_bundle "$T/pause$n" "pod$n" sandbox "$ns" sleep 600
    conmon_create "pod$n" "$T/pause$n"
    crio start "pod$n"
    pod_bundle "$T/app$n" "pod$n" container "$ns" sh -c "echo pod$n > /www/index.html; httpd -f -p 80 -h /www"
    conmon_create "app$n" "$T/app$n"
    crio start "app$n"
  done
  [ "$(pgrep -fc -- "qemu-system.*$T")" = 3 ]
  for n in 1 2 3; do
    run curl -fs --retry 30 --retry-all-errors --retry-delay 1 "http://10.77.$n.2/"
    echo "pod$n: $output"
    [ "$output" = "pod$n" ]
    # Each pod sees only its own containers' files.
    run crio exec "app$n" cat /www/index.html
    [ "$output" = "pod$n" ]
  done
  for n in 1 2 3; do
    crio delete --force "app$n"
    crio delete --force "pod$n"
  done
  assert_no_leak
}
