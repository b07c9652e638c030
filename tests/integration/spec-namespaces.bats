#!/usr/bin/env bats
# linux.namespaces entries with a path, through the hull CLI. A path that
# names another hull container's namespace (its PID is its proxy, which
# holds namespaces of its own) becomes that container's namespace in the
# guest, and puts the new container in that container's VM: by CRI-O's
# annotations or by the paths alone, as podman's pods give them. A path of
# the wrong type is refused, as runc refuses it; a host process's
# namespace, which a VM cannot join, is refused too.

load helpers

setup() { setup_hull; }

# Host processes ($T/helpers) and network namespaces ($T/netns) a test
# made go after hull's leak check.
teardown() {
  local rc=0 p ns
  [ ! -f "$T/helpers" ] || while read -r p; do kill "$p" 2>/dev/null || true; done < "$T/helpers"
  [ ! -f "$T/netns" ] || while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done < "$T/netns"
  teardown_hull || rc=$?
  return $rc
}

LOOP='trap "exit 0" TERM; while :; do sleep 1; done'

# box ID DIR [JQ-FILTER]: creates and starts a container that runs until
# told to stop, its spec edited by JQ-FILTER; sets PID to its pid.
box() {
  local id=$1 dir=$2
  make_bundle "$dir" sh -c "$LOOP"
  [ -z "${3:-}" ] || edit_spec "$dir" "$3"
  hull create --bundle "$dir" --pid-file "$dir/pid" "$id" </dev/null >"$dir.out" 2>&1
  hull start "$id"
  PID=$(cat "$dir/pid")
}

# ns_path TYPE PATH: a jq filter giving the spec a TYPE namespace at PATH.
ns_path() {
  echo ".linux.namespaces = ([.linux.namespaces[] | select(.type != \"$1\")] + [{type: \"$1\", path: \"$2\"}])"
}

# ns_paths PID TYPE...: a jq filter pointing the spec's TYPE namespaces at
# /proc/PID/ns/<file of TYPE>.
ns_paths() {
  local pid=$1 f=. t file; shift
  for t in "$@"; do
    case $t in mount) file=mnt ;; network) file=net ;; *) file=$t ;; esac
    f="$f | $(ns_path "$t" "/proc/$pid/ns/$file")"
  done
  echo "$f"
}

# crio ROLE SANDBOX: a jq filter setting CRI-O's pod annotations.
crio() {
  echo ".annotations = {\"io.kubernetes.cri-o.ContainerType\": \"$1\", \"io.kubernetes.cri-o.SandboxID\": \"$2\"}"
}

# guest_ns ID FILE: the namespace the container's processes are in, as the
# guest names it.
guest_ns() { hull exec "$1" readlink "/proc/self/ns/$2"; }

qemus() { pgrep -fc -- "qemu-system.*$T" || true; }

# refused ID BUNDLE WORDS: create fails saying WORDS and leaves nothing.
refused() {
  run hull create --bundle "$2" --pid-file "$2/pid" "$1" </dev/null
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *"$3"* ]]
  [ "${#lines[@]}" -eq 1 ]
  run hull state "$1"
  [ "$status" -ne 0 ]
  [ ! -e "$2/pid" ]
}

@test "a path of the wrong type is refused at create, as runc refuses it" {
  # Helpers close bats' fd 3 and output, or bats waits for them.
  sleep 600 >/dev/null 2>&1 3>&- &
  host=$!
  echo "$host" >> "$T/helpers"
  B=$T/b; make_bundle "$B" hostname
  # No hostname: runc would set it in whatever UTS namespace it joins.
  edit_spec "$B" "del(.hostname) | $(ns_path uts "/proc/$host/ns/ipc")"
  refused c1 "$B" "uts namespace path /proc/$host/ns/ipc: wrong namespace type: it is ipc, not uts"
  [ "$(qemus)" = 0 ]
  # runc on the same bundle: setns(2) refuses the IPC namespace as UTS.
  run runc --root "$T/runc" run --bundle "$B" r1
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *"setns into uts namespace"* ]]
  runc --root "$T/runc" delete --force r1 2>/dev/null || true
  # A sibling's namespace of the wrong type too.
  box sb "$T/sb"
  sb=$PID
  edit_spec "$B" "$(ns_path uts "/proc/$sb/ns/ipc")"
  refused c1 "$B" "wrong namespace type: it is ipc, not uts"
  # With the right type runc joins the host process's namespace; hull
  # cannot, and says why.
  edit_spec "$B" "$(ns_path uts "/proc/$host/ns/uts")"
  run runc --root "$T/runc" run --bundle "$B" r2
  [ "$status" -eq 0 ]
  [ "$output" = "$(hostname)" ]
  refused c1 "$B" "host process's namespace"
  hull delete --force sb
  assert_no_leak
}

@test "a host process's namespace is refused: the host's own, a host process's private one, the host's network" {
  B=$T/b; make_bundle "$B" true
  edit_spec "$B" "$(ns_paths $$ ipc)"
  refused c1 "$B" "ipc namespace path /proc/$$/ns/ipc: it is a host process's namespace, not a hull container's; a container in a VM cannot join a host namespace"
  # Not the host's own, but still no hull container's.
  unshare --uts --ipc --mount --pid --fork --kill-child sleep 600 >/dev/null 2>&1 3>&- &
  ush=$!
  echo "$ush" >> "$T/helpers"
  for _ in $(seq 1 50); do
    child=$(pgrep -P "$ush" sleep || true)
    [ -n "$child" ] && break
    sleep 0.1
  done
  [ -n "$child" ]
  [ "$(readlink /proc/"$child"/ns/uts)" != "$(readlink /proc/self/ns/uts)" ]
  for t in uts ipc mount pid; do
    make_bundle "$T/$t" true
    edit_spec "$T/$t" "$(ns_paths "$child" $t)"
    refused c1 "$T/$t" "host process's namespace"
  done
  make_bundle "$T/net" true
  edit_spec "$T/net" "$(ns_paths $$ network)"
  refused c1 "$T/net" "host networking cannot work in a VM"
  [ "$(qemus)" = 0 ]
  assert_no_leak
}

@test "CRI-O annotations: an app container shares its sandbox container's IPC, UTS, PID and cgroup namespaces in one VM" {
  box pod1 "$T/pod" "$(crio sandbox pod1) | $(ns_path cgroup "")"
  pod=$PID
  box app1 "$T/app" "$(crio container pod1) | $(ns_paths "$pod" ipc uts pid cgroup)"
  # A sibling without paths gets namespaces of its own.
  box app2 "$T/app2" "$(crio container pod1) | $(ns_path cgroup "")"
  [ "$(qemus)" = 1 ]
  for f in ipc uts pid cgroup; do
    want=$(guest_ns pod1 $f)
    [ "$(guest_ns app1 $f)" = "$want" ]
    [ "$(guest_ns app2 $f)" != "$want" ]
  done
  # The guest's namespaces, not the proxy's on the host.
  [ "$(guest_ns app1 ipc)" != "$(readlink /proc/"$pod"/ns/ipc)" ]
  # One PID namespace: the app sees the sandbox's processes.
  run hull exec app1 ps
  [[ "$output" == *"while :"* ]]
  hull delete --force app1
  hull delete --force app2
  [ "$(hull state pod1 | jq -r .status)" = running ]
  hull delete --force pod1
  assert_no_leak
}

@test "a sibling's mount namespace goes to the guest's runtime, which cannot set a rootfs up in it (nor can runc on a host)" {
  box pod1 "$T/pod" "$(crio sandbox pod1)"
  pod=$PID
  B=$T/app; make_bundle "$B" true
  edit_spec "$B" "$(crio container pod1) | $(ns_paths "$pod" mount)"
  run hull create --bundle "$B" --pid-file "$B/pid" app1 </dev/null
  echo "$output"
  [ "$status" -ne 0 ]
  # Not refused as a host namespace: it reached crun in the guest.
  [[ "$output" != *"host process's namespace"* ]]
  [[ "$output" == *"rpc error"* ]]
  run hull state app1
  [ "$status" -ne 0 ]
  [ "$(hull state pod1 | jq -r .status)" = running ]
  hull delete --force pod1
  assert_no_leak
}

@test "paths alone, as podman's pods give them: the app container joins its infra container's VM" {
  ns=hullns$$
  ip netns add "$ns"
  echo "$ns" >> "$T/netns"
  ip -n "$ns" link set lo up
  box infra "$T/infra" "$(ns_path network "/var/run/netns/$ns")
    | .process.args = [\"httpd\", \"-f\", \"-p\", \"127.0.0.1:8080\", \"-h\", \"/www\"]"
  infra=$PID
  echo "infra page" > "$T/infra/rootfs/www/index.html"
  # podman: the network by its pinned path, IPC and UTS by the infra PID.
  box app "$T/app" "$(ns_path network "/var/run/netns/$ns") | $(ns_paths "$infra" ipc uts)"
  [ "$(qemus)" = 1 ]
  [ "$(guest_ns app ipc)" = "$(guest_ns infra ipc)" ]
  [ "$(guest_ns app uts)" = "$(guest_ns infra uts)" ]
  [ "$(guest_ns app mnt)" != "$(guest_ns infra mnt)" ]
  # localhost between them: one VM, one network.
  # shellcheck disable=SC2016 # expanded in the container
  run hull exec app sh -c 'for i in $(seq 1 30); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1'
  [ "$status" -eq 0 ]
  [ "$output" = "infra page" ]
  # The network by /proc/PID/ns/net (docker's --net=container:) too.
  box app2 "$T/app2" "$(ns_paths "$infra" network)"
  [ "$(qemus)" = 1 ]
  run hull exec app2 wget -qO- http://127.0.0.1:8080/
  [ "$output" = "infra page" ]
  hull delete --force app
  hull delete --force app2
  hull delete --force infra
  assert_no_leak
}

@test "a container's paths must name one sandbox, and the one its annotations name" {
  box s1 "$T/s1"
  s1=$PID
  box s2 "$T/s2"
  s2=$PID
  [ "$(qemus)" = 2 ]
  make_bundle "$T/b1" true
  edit_spec "$T/b1" "$(ns_paths "$s1" ipc) | $(ns_paths "$s2" uts)"
  refused c1 "$T/b1" "but other namespaces are sandbox s1's; a container runs in one VM"
  make_bundle "$T/b2" true
  edit_spec "$T/b2" "$(crio container s2) | $(ns_paths "$s1" ipc)"
  refused c1 "$T/b2" "its pod annotations put it in sandbox s2, but its namespace paths are sandbox s1's"
  make_bundle "$T/b3" true
  edit_spec "$T/b3" "$(crio sandbox c1) | $(ns_paths "$s1" ipc)"
  refused c1 "$T/b3" "its pod annotations make it a sandbox of its own"
  [ "$(qemus)" = 2 ]
  hull delete --force s1
  hull delete --force s2
  assert_no_leak
}
