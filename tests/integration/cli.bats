#!/usr/bin/env bats
# hull as a runc drop-in, driven with the exact command lines of containerd's
# runc v2 shim and of conmon, on real VMs under TCG.

bats_require_minimum_version 1.5.0 # for run -N

load helpers

setup() { setup_hull; }
teardown() { teardown_hull; }

# shim_hull runs hull as containerd's runc v2 shim does.
shim_hull() { "$HULL_BIN" --root "$ROOT" --log "$B/log.json" --log-format json "$@"; }

@test "lifecycle with the shim's command lines: created, running, stopped; output reaches create's pipes" {
  B=$T/b
  # shellcheck disable=SC2016 # the workload's shell expands $line
  make_bundle "$B" sh -c 'echo out-line; echo err-line >&2; read line; echo "got $line"; exec sleep 600'
  mkfifo "$T/in"
  exec 7<>"$T/in"
  shim_hull create --bundle "$B" --pid-file "$B/init.pid" c1 <&7 >"$T/stdout" 2>"$T/stderr"
  [ -s "$B/init.pid" ]
  pid=$(cat "$B/init.pid")
  run hull state c1
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -r .status)" = created ]
  [ "$(echo "$output" | jq -r .pid)" = "$pid" ]
  [ "$(echo "$output" | jq -r .bundle)" = "$B" ]
  kill -0 "$pid"
  shim_hull start c1
  [ "$(hull state c1 | jq -r .status)" = running ]
  assert_clone c1
  wait_file "$T/stdout" out-line
  wait_file "$T/stderr" err-line
  echo hello-stdin >&7
  wait_file "$T/stdout" "got hello-stdin"
  exec 7>&-
  shim_hull kill c1 9
  wait_status c1 stopped
  [ "$(hull state c1 | jq -r .pid)" = 0 ]
  exited "$pid"
  shim_hull delete c1
  run hull state c1
  [ "$status" -ne 0 ]
  [[ "$output" == *"does not exist"* ]]
  assert_no_leak
}

@test "conmon's create command line, and the workload's exit status as the pid's exit code" {
  B=$T/b; make_bundle "$B" sh -c 'exit 3'
  "$HULL_BIN" --root="$ROOT" create --bundle "$B" --pid-file "$B/pidfile" --no-pivot --no-new-keyring c1 </dev/null >"$T/out" 2>&1
  "$HULL_BIN" --root "$ROOT" start c1
  wait_status c1 stopped
  # hull run waits on its own proxy: the exit code is the workload's.
  B2=$T/b2; make_bundle "$B2" sh -c 'exit 3'
  run hull run --bundle "$B2" r1
  [ "$status" -eq 3 ]
  # Killed by a signal: 128+N. (The container's PID 1 ignores signals it
  # has no handler for, so the kill comes from outside, as docker's would.)
  B3=$T/b3; make_bundle "$B3" sleep 600
  hull run --bundle "$B3" r2 </dev/null &
  runner=$!
  wait_status r2 running
  hull kill r2 KILL
  rc=0; wait "$runner" || rc=$?
  [ "$rc" -eq 137 ]
}

@test "a tty through --console-socket: the helper receives the pty master and types into it" {
  B=$T/b; make_bundle "$B" sh
  edit_spec "$B" '.process.terminal = true'
  "$RECVTTY" -socket "$T/console.sock" -ready "$T/ready" -input $'echo sum-$((40+2)); tty; exit 5\n' >"$T/tty.out" 2>&1 &
  helper=$!
  wait_exists "$T/ready" 10
  hull create --bundle "$B" --console-socket "$T/console.sock" --pid-file "$T/pid" c1
  hull start c1
  wait "$helper"
  grep -q "sum-42" "$T/tty.out"
  grep -q "/dev/pts/" "$T/tty.out"
  run -1 grep -q $'\r\r' "$T/tty.out"
  wait_status c1 stopped
  hull delete c1
}

@test "exec: foreground with exit codes and env, detached with a pid file and its own output" {
  B=$T/b; make_bundle "$B" sleep 600
  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  hull start c1
  # shellcheck disable=SC2016 # $FOO expands in the guest
  run hull exec c1 sh -c 'echo in-guest-$FOO; exit 4' --env FOO=bar
  [ "$status" -eq 4 ]
  # shellcheck disable=SC2016 # $FOO expands in the guest
  run hull exec --env FOO=bar c1 sh -c 'echo in-guest-$FOO'
  [ "$status" -eq 0 ]
  [[ "$output" == *in-guest-bar* ]]
  jq '.process | .args = ["sh", "-c", "echo detached-out; sleep 60; exit 6"] | .terminal = false' "$B/config.json" > "$T/process.json"
  hull exec --process "$T/process.json" --detach --pid-file "$T/exec.pid" c1 </dev/null >"$T/exec.out" 2>&1
  [ -s "$T/exec.pid" ]
  wait_file "$T/exec.out" detached-out
  run hull ps --format json c1
  [ "$status" -eq 0 ]
  echo "$output" | jq -e --argjson p "$(cat "$T/exec.pid")" 'index($p) != null'
  hull delete --force c1
}

@test "an exec whose pid is killed (a timed-out probe) does not live on in the guest" {
  B=$T/b; make_bundle "$B" sleep 1000
  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  hull start c1
  # containerd SIGKILLs an exec's PID when a probe times out: the PID is
  # hull's proxy, and the process in the guest must go with it.
  jq '.process | .args = ["sleep", "600"] | .terminal = false' "$B/config.json" > "$T/probe.json"
  hull exec --process "$T/probe.json" --detach --pid-file "$T/probe.pid" c1 </dev/null >/dev/null 2>&1
  run hull exec c1 ps
  [[ "$output" == *"sleep 600"* ]]
  kill -9 "$(cat "$T/probe.pid")"
  wait_ps_without "sleep 600" hull exec c1 ps
  [[ "$output" == *"sleep 1000"* ]]
  hull delete --force c1
}

@test "kill by name and by number, -a to all processes; delete --force of a running container" {
  B=$T/b; make_bundle "$B" sh -c 'trap "echo usr1-caught" USR1; trap "echo term-caught; exit 9" TERM; while :; do sleep 0.1; done'
  hull create --bundle "$B" c1 </dev/null >"$T/out" 2>&1
  hull start c1
  sleep 1
  hull kill c1 USR1
  wait_file "$T/out" usr1-caught
  hull kill c1 0   # runc's liveness probe: no signal, success while it runs
  hull kill c1 SIGUSR1
  hull kill c1 15
  wait_file "$T/out" term-caught
  wait_status c1 stopped
  run hull kill c1 9
  [ "$status" -ne 0 ]
  [[ "$output" == *"container not running"* ]]
  run hull kill c1 0
  [ "$status" -ne 0 ]
  hull delete c1

  B2=$T/b2; make_bundle "$B2" sh -c 'sleep 600 & sleep 600'
  hull create --bundle "$B2" c2 </dev/null >/dev/null 2>&1
  hull start c2
  hull kill --all c2 KILL
  wait_status c2 stopped
  hull delete c2

  B3=$T/b3; make_bundle "$B3" sleep 600
  hull create --bundle "$B3" c3 </dev/null >/dev/null 2>&1
  hull start c3
  run hull delete c3
  [ "$status" -ne 0 ]
  [ "$(hull state c3 | jq -r .status)" = running ]
  hull delete --force c3
  assert_no_leak
}

@test "ps, list in every format, pause and resume, update, events" {
  B=$T/b; make_bundle "$B" sleep 600
  hull create --bundle "$B" --pid-file "$T/pid" c1 </dev/null >/dev/null 2>&1
  hull start c1
  run hull ps --format json c1
  [ "$status" -eq 0 ]
  [ "$output" = "[$(cat "$T/pid")]" ]
  run hull list
  [[ "${lines[0]}" == *ID*PID*STATUS*BUNDLE*CREATED*OWNER* ]]
  [[ "${lines[1]}" == c1*"$(cat "$T/pid")"*running*"$B"*root* ]]
  run hull list -q
  [ "$output" = c1 ]
  run hull list --format json
  [ "$(echo "$output" | jq -r '.[0].id + " " + .[0].status')" = "c1 running" ]
  hull pause c1
  [ "$(hull state c1 | jq -r .status)" = paused ]
  run hull exec c1 true
  [ "$status" -ne 0 ]
  hull resume c1
  [ "$(hull state c1 | jq -r .status)" = running ]
  echo '{"memory": {"limit": 104857600}}' | hull update --resources - c1
  run hull exec c1 cat /sys/fs/cgroup/memory/memory.limit_in_bytes
  [ "$output" = 104857600 ]
  run hull events --stats c1
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -r .type)" = stats ]
  [ "$(echo "$output" | jq -r .data.memory.usage.limit)" = 104857600 ]
  hull delete --force c1
}

@test "hooks run on the host with the state on stdin" {
  # A workload that outlives the poststart hook: `true` may be gone before
  # the hook reads the state, which would then say stopped.
  B=$T/b; make_bundle "$B" sleep 600
  for h in prestart createRuntime poststart poststop; do
    printf '#!/bin/sh\ncat > %s/%s.json\n' "$T" "$h" > "$T/$h.sh"; chmod +x "$T/$h.sh"
  done
  edit_spec "$B" ".hooks = {prestart: [{path: \"$T/prestart.sh\"}], createRuntime: [{path: \"$T/createRuntime.sh\"}], poststart: [{path: \"$T/poststart.sh\"}], poststop: [{path: \"$T/poststop.sh\"}]}"
  hull create --bundle "$B" --pid-file "$T/pid" c1 </dev/null >/dev/null 2>&1
  [ "$(jq -r .status "$T/prestart.json")" = created ]
  [ "$(jq -r .pid "$T/createRuntime.json")" = "$(cat "$T/pid")" ]
  [ "$(jq -r .id "$T/prestart.json")" = c1 ]
  hull start c1
  [ "$(jq -r .status "$T/poststart.json")" = running ]
  hull kill c1 KILL
  wait_status c1 stopped
  hull delete c1
  [ "$(jq -r .status "$T/poststop.json")" = stopped ]
  [ "$(jq -r .bundle "$T/poststop.json")" = "$B" ]
}

@test "readonly rootfs, and a bind-mounted volume read-write in the guest" {
  mkdir -p "$T/vol" "$T/rovol"
  echo from-host > "$T/vol/in.txt"
  echo ro-data > "$T/rovol/ro.txt"
  B=$T/b; make_bundle "$B" sh -c 'cat /vol/in.txt; echo from-guest > /vol/out.txt; cat /ro/ro.txt; if touch /ro/x 2>/dev/null; then echo ro-writable; fi; if touch /rootfs-file 2>/dev/null; then echo root-writable; else echo root-readonly; fi'
  edit_spec "$B" ".root.readonly = true | .mounts += [{destination: \"/vol\", type: \"bind\", source: \"$T/vol\", options: [\"rbind\", \"rw\"]}, {destination: \"/ro\", type: \"bind\", source: \"$T/rovol\", options: [\"rbind\", \"ro\"]}]"
  run hull run --bundle "$B" c1
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *from-host* ]]
  [[ "$output" == *ro-data* ]]
  [[ "$output" == *root-readonly* ]]
  [[ "$output" != *ro-writable* ]]
  [ "$(cat "$T/vol/out.txt")" = from-guest ]
  [ ! -e "$B/rootfs/rootfs-file" ]
}

@test "bad input: clear errors, non-zero exit, nothing left behind" {
  B=$T/b; make_bundle "$B" true
  long=$(printf 'a%.0s' $(seq 1 1025))
  for id in "a/b" ".." "" "$long"; do
    run hull create --bundle "$B" "$id"
    [ "$status" -ne 0 ]
    [[ "$output" == *"invalid container id"* || "$output" == *"expects exactly one"* ]]
  done
  run hull create --bundle "$T/nonexistent" c1
  [ "$status" -ne 0 ]; [[ "$output" == *"no such file"* ]]
  mkdir -p "$T/empty"
  run hull create --bundle "$T/empty" c1
  [ "$status" -ne 0 ]; [[ "$output" == *config.json* ]]
  mkdir -p "$T/bad"; echo '{not json' > "$T/bad/config.json"
  run hull create --bundle "$T/bad" c1
  [ "$status" -ne 0 ]; [[ "$output" == *"invalid character"* ]]
  B2=$T/b2; make_bundle "$B2" true; edit_spec "$B2" '.ociVersion = "0.9.0"'
  run hull create --bundle "$B2" c1
  [ "$status" -ne 0 ]; [[ "$output" == *"unsupported ociVersion"* ]]
  # Creates that fail keep no proxy: nothing holds the output pipe open.
  B3=$T/b3; make_bundle "$B3" /no/such/binary
  run hull create --bundle "$B3" c1 </dev/null
  [ "$status" -ne 0 ]; [[ "${output,,}" == *"no such file"* ]]
  # Each layer adds its own words: the container is named once, not
  # "create container c1: create container c1: ...".
  [ "$(grep -o 'container c1' <<<"$output" | wc -l)" -eq 1 ]
  # runc creates a missing cwd; a cwd that is a file fails.
  B4=$T/b4; make_bundle "$B4" true; touch "$B4/rootfs/data/file"; edit_spec "$B4" '.process.cwd = "/data/file"'
  run hull create --bundle "$B4" c1 </dev/null
  [ "$status" -ne 0 ]; [[ "${output,,}" == *"not a directory"* ]]
  assert_no_leak
  for cmd in start state delete pause resume ps events; do
    run hull $cmd nosuch
    [ "$status" -ne 0 ]
    [[ "$output" == *"does not exist"* ]]
  done
  run hull kill nosuch 9
  [ "$status" -ne 0 ]; [[ "$output" == *"does not exist"* ]]

  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  run hull create --bundle "$B" c1 </dev/null
  [ "$status" -ne 0 ]; [[ "$output" == *"already exists"* ]]
  run hull kill c1 NOTASIGNAL
  [ "$status" -ne 0 ]; [[ "$output" == *"unknown signal"* ]]
  hull start c1
  run hull start c1
  [ "$status" -ne 0 ]; [[ "$output" == *"cannot start"* ]]
  wait_status c1 stopped
  hull delete c1
  # No systemd as PID 1 here: the systemd driver is refused at create,
  # before anything is made (other commands take the flag, as runc's do).
  run "$HULL_BIN" --root "$ROOT" --systemd-cgroup create --bundle "$B" c2 </dev/null
  [ "$status" -ne 0 ]; [[ "$output" == *"--systemd-cgroup: systemd is not running"* ]]
  run "$HULL_BIN" --root "$ROOT" --systemd-cgroup list -q
  [ "$status" -eq 0 ]; [ -z "$output" ]
  assert_no_leak
}

@test "errors go to --log as JSON for the shim" {
  B=$T/b
  run "$HULL_BIN" --root "$ROOT" --log "$T/log.json" --log-format json kill nosuch 9
  [ "$status" -ne 0 ]
  [ "$(tail -n1 "$T/log.json" | jq -r .level)" = error ]
  [[ "$(tail -n1 "$T/log.json" | jq -r .msg)" == *"does not exist"* ]]
}
