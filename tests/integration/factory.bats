#!/usr/bin/env bats
# VM templating: sandboxes started as clones of a template VM that
# `hull factory init` saved, on real VMs under TCG. A clone must behave as
# its own VM (exit code, random numbers, clock), a template that does not
# fit must mean a cold boot and never a failure, and nothing may be left.

bats_require_minimum_version 1.5.0 # run ! and run -N

load helpers
load containerd

setup() {
  setup_hull
  # What a template needs: the guest root as an initrd, the share over 9p.
  # The factory directory is not on tmpfs: init mounts one there.
  cat > "$HULL_CONFIG" <<TOML
[hypervisor]
accel = "${HULL_ACCEL:-tcg}"
kernel = "${HULL_KERNEL:-$BUILD/vmlinux-hull}"
initrd = "$BUILD/initrd-hull.img"
default_memory = 256

[shared_fs]
type = "virtio-9p"

[factory]
template = true
dir = "$T/factory"
nics = 0
TOML
}

teardown() {
  local rc=0
  if [ -f "$T/ctrd/containerd.pid" ]; then
    C=$T/ctrd remove_pods
    shim_teardown "$T/ctrd" || rc=1
    stop_containerd "$T/ctrd"
    ip link del hullcri0 2>/dev/null || true
  fi
  for id in $(hull list -q 2>/dev/null); do hull delete --force "$id" >/dev/null 2>&1 || true; done
  hull factory destroy || rc=1
  remove_pod_netns
  teardown_hull || rc=1
  return "$rc"
}

# template_hash: the hash of the published template.
template_hash() { jq -r .hash "$T/factory/template.json"; }

# start_clone ID [NETNS]: `hull run` of a container serving its ID over
# HTTP on port 80 (in the network namespace at NETNS, if given), in the
# background (its PID in $T/ID.runner); fails unless its sandbox is a clone
# of the template.
start_clone() {
  make_bundle "$T/$1" httpd -f -p 80 -h /www
  echo "$1" > "$T/$1/rootfs/www/index.html"
  if [ -n "${2:-}" ]; then
    edit_spec "$T/$1" "(.linux.namespaces[] | select(.type == \"network\")).path = \"$2\""
  fi
  hull run --bundle "$T/$1" "$1" </dev/null >/dev/null 2>&1 &
  echo $! > "$T/$1.runner"
  wait_status "$1" running
  [ "$(sandbox_info "$1" template)" = "$(template_hash)" ]
}

# in_netns NETNS_PATH ARGS...: runs ARGS in the network namespace.
in_netns() { local ns=$1; shift; nsenter --net="$ns" "$@"; }

# netns_links NETNS_PATH: the names of the namespace's links, one line.
netns_links() { in_netns "$1" ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort | tr '\n' ' '; }

# netns_mac NETNS_PATH: the MAC of the namespace's eth0.
netns_mac() { in_netns "$1" ip -o link show eth0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2; }

# wait_runner ID: waits for the `hull run` of start_clone ID; its exit
# status is then in $RC. (Not in a subshell: only this shell can wait.)
wait_runner() {
  RC=0
  wait "$(cat "$T/$1.runner")" || RC=$?
}

# stop_clone ID: kills the container; its `hull run` exits 137 and removes it.
stop_clone() {
  hull kill "$1" KILL
  wait_runner "$1"
  [ "$RC" -eq 137 ] || { echo "run $1 exited $RC, want 137" >&2; return 1; }
}

@test "without factory.template, init refuses and sandboxes boot as before" {
  sed -i 's/^template = true/template = false/' "$HULL_CONFIG"
  run -1 hull factory init
  [[ "$output" == *"factory.template is false"* ]]
  [ ! -e "$T/factory" ]
  run hull factory status
  [ "$status" -eq 0 ]
  [[ "$output" == *"no template"* ]]
}

@test "ten sandboxes from one template: each its own exit code, network, random numbers and clock" {
  # Each sandbox has a network namespace with one interface, as a CNI
  # plugin leaves it: the template is made with one NIC.
  sed -i 's/^nics = 0/nics = 1/' "$HULL_CONFIG"
  run hull factory init
  [ "$status" -eq 0 ]
  [[ "$output" == "template $(template_hash) made in "* ]]
  run hull factory status
  [[ "$output" == *"usable:    yes"* ]]
  [ "$(jq .shape.nics "$T/factory/template.json")" = 1 ]
  local ns=()
  for i in $(seq 1 10); do
    make_pod_netns "$i" 10.78
    ns[i]=$NS
    make_bundle "$T/r$i" sh -c "head -c 16 /dev/urandom | od -An -tx1; exit $i"
    edit_spec "$T/r$i" "(.linux.namespaces[] | select(.type == \"network\")).path = \"$NS\""
  done
  run_ten r --debug --log "$T/r.log"
  [ "$(grep -c 'sandbox started from the VM template' "$T/r.log")" -eq 10 ]
  for i in $(seq 1 10); do
    [ "$(wc -w < "$T/r$i.out")" -eq 16 ]
  done
  [ "$(cat "$T"/r*.out | sort -u | wc -l)" -eq 10 ]
  for i in $(seq 1 10); do start_clone "c$i" "${ns[$i]}"; done
  for i in $(seq 1 10); do
    # Its own network: the NIC has the MAC of its namespace's interface,
    # not the template's, and its server answers on its own address.
    [ "$(hull exec "c$i" cat /sys/class/net/eth0/address)" = "$(netns_mac "${ns[$i]}")" ]
    [ "$(hull exec "c$i" ip -4 -o addr show eth0 | awk '{print $4}')" = "10.78.$i.2/24" ]
    [ "$(curl -fs --retry 20 --retry-all-errors --retry-delay 1 "http://10.78.$i.2/")" = "c$i" ]
    # The clock: a clone whose clock was not set runs on the template's,
    # which stood still since it was saved, seconds ago by now.
    guest=$(hull exec "c$i" date +%s)
    host=$(date +%s)
    echo "clone c$i: $guest, host: $host" >&2
    [ "$guest" -ge $((host - 1)) ]
    [ "$guest" -le $((host + 1)) ]
  done
  for i in $(seq 1 10); do stop_clone "c$i"; done
  # The namespaces are as the "CNI plugin" left them: no tap, no redirect.
  for i in $(seq 1 10); do
    [ "$(netns_links "${ns[$i]}")" = "eth0 lo " ]
    [ -z "$(in_netns "${ns[$i]}" tc qdisc show dev eth0 ingress)" ]
  done
  hull factory destroy
  assert_no_leak
}

@test "a template of another shape, a truncated or a damaged one: a cold boot with a log line, no failure" {
  hull factory init
  make_bundle "$T/b" sh -c 'exit 4'
  # Another shape: more memory than the template was made with.
  sed -i 's/^default_memory = .*/default_memory = 320/' "$HULL_CONFIG"
  run -4 hull --debug --log "$T/shape.log" run --bundle "$T/b" s1
  grep 'sandbox boots cold' "$T/shape.log" | grep -q 'memory_mib: 256 != 320'
  sed -i 's/^default_memory = .*/default_memory = 256/' "$HULL_CONFIG"

  # Truncated: the device state cut short.
  state=$T/factory/$(jq -r .dir "$T/factory/template.json")/state
  chmod u+w "$state"
  cp "$state" "$T/state.good"
  truncate -s 1000 "$state"
  run -4 hull --debug --log "$T/short.log" run --bundle "$T/b" s2
  grep 'sandbox boots cold' "$T/short.log" | grep -q 'is damaged: .*1000 bytes, saved with'

  # Damaged past what hull checks: a state of the right size and checksum
  # that QEMU cannot load. The clone fails and the sandbox boots cold.
  head -c "$(stat -c %s "$T/state.good")" /dev/urandom > "$state"
  sum=$(sha256sum "$state" | cut -d' ' -f1)
  jq --arg s "$sum" '.state_sha256 = $s' "$T/factory/template.json" > "$T/t.json"
  mv "$T/t.json" "$T/factory/template.json"
  run -4 hull --debug --log "$T/bad.log" run --bundle "$T/b" s3
  grep -q 'sandbox boots cold: its clone of the VM template failed' "$T/bad.log"

  # And a template made again is cloned again.
  hull factory init
  start_clone c2
  stop_clone c2
  hull factory destroy
  assert_no_leak
}

@test "kill -9 of one clone leaves the others and the template untouched" {
  hull factory init
  sum=$(sha256sum "$T"/factory/t-*/memory "$T"/factory/t-*/state)
  for c in c1 c2 c3; do start_clone "$c"; done
  kill -9 "$(sandbox_info c2 qemuPid)"
  wait_runner c2
  [ "$RC" -ne 0 ]
  [ "$(hull exec c1 echo alive)" = alive ]
  [ "$(hull exec c3 echo alive)" = alive ]
  [ "$(sha256sum "$T"/factory/t-*/memory "$T"/factory/t-*/state)" = "$sum" ]
  run hull factory status
  [[ "$output" == *"usable:    yes"* ]]
  # A clone's translation cache is its own (factory.tcg_tb_size), no part
  # of the template's shape.
  printf 'tcg_tb_size = 8\n' >> "$HULL_CONFIG"
  start_clone c4
  grep -q 'tb-size=8' "/proc/$(sandbox_info c4 qemuPid)/cmdline"
  run ! grep -q 'tb-size=8' "/proc/$(sandbox_info c1 qemuPid)/cmdline"
  [ "$(hull exec c4 echo alive)" = alive ]
  for c in c1 c3 c4; do stop_clone "$c"; done
  hull factory destroy
  assert_no_leak
}

@test "hull factory destroy leaves nothing, and running clones keep running" {
  hull factory init
  grep -qF "$T/factory" /proc/self/mountinfo
  start_clone c1
  hull factory destroy
  [ ! -e "$T/factory" ]
  run ! grep -qF "$T/factory" /proc/self/mountinfo
  [ "$(hull exec c1 echo alive)" = alive ]
  run hull factory status
  [[ "$output" == *"no template"* ]]
  # Without a template, a sandbox boots cold.
  make_bundle "$T/b" sh -c 'exit 6'
  run -6 hull --debug --log "$T/cold.log" run --bundle "$T/b" s1
  grep 'sandbox boots cold' "$T/cold.log" | grep -q 'no VM template'
  stop_clone c1
  assert_no_leak
}

@test "an init killed while its template VM runs: the next init removes what it left" {
  sed -i 's/^nics = 0/nics = 1/' "$HULL_CONFIG"
  "$HULL_BIN" --root "$ROOT" factory init >/dev/null 2>&1 &
  init=$!
  for _ in $(seq 1 200); do pgrep -f -- "qemu-system.*$T/factory/t-" >/dev/null && break; sleep 0.05; done
  kill -9 "$init"
  wait "$init" || true
  for _ in $(seq 1 100); do pgrep -f -- "qemu-system.*$T/factory/t-" >/dev/null || break; sleep 0.1; done
  run ! pgrep -f -- "qemu-system.*$T/factory/t-"
  # Its half-made template, and the pinned namespace of its NICs' taps.
  grep -qF "$T/factory/t-" /proc/self/mountinfo
  [ ! -e "$T/factory/template.json" ]
  hull factory init
  [ "$(find "$T/factory" -mindepth 1 -maxdepth 1 -name 't-*' | wc -l)" = 1 ]
  run ! grep -qF "$T/factory/t-" /proc/self/mountinfo
  hull factory destroy
  assert_no_leak
}

@test "through containerd's shim too: a pod's VM starts as a clone" {
  hull factory init
  mkdir -p "$T/ctrd"
  cp "$HULL_CONFIG" "$T/ctrd/hull.toml"
  start_containerd "$T/ctrd" "${HULL_CONTAINERD:-1}"
  import_busybox "$T/ctrd"
  img=docker.io/library/hull-busybox:latest
  containerd_ctr "$T/ctrd" run -d --runtime io.containerd.hull.v2 "$img" s1 sleep 600 >/dev/null
  # Its QEMU maps the template's RAM copy-on-write and loaded its state.
  [ "$(template_clones "$T")" = 1 ]
  run containerd_ctr "$T/ctrd" task exec --exec-id e1 s1 sh -c 'exit 5'
  [ "$status" -eq 5 ]
  containerd_ctr "$T/ctrd" task kill -s KILL s1
  for _ in $(seq 1 100); do containerd_ctr "$T/ctrd" task ls | grep -q "^s1 .*STOPPED" && break; sleep 0.2; done
  containerd_ctr "$T/ctrd" task delete s1
  containerd_ctr "$T/ctrd" containers rm s1
  shim_teardown "$T/ctrd"
  stop_containerd "$T/ctrd"
  hull factory destroy
  assert_no_leak
}

@test "a Kubernetes pod through the shim: its VM a clone, with the pod's own network" {
  sed -i 's/^nics = 0/nics = 1/' "$HULL_CONFIG"
  hull factory init
  # shellcheck disable=SC2034 # pod() runs on HANDLER
  C=$T/ctrd HANDLER=hull-v2
  mkdir -p "$C/logs"
  cp "$HULL_CONFIG" "$C/hull.toml"
  start_containerd "$C" "${HULL_CONTAINERD:-1}"
  import_cri_images "$C"
  p=$(pod p1)
  [ "$(template_clones "$T")" = 1 ]
  web=$(ctr_in "$p" p1 web httpd -f -p 80 -h /www)
  # The NIC has the MAC the CNI plugin gave the pod's eth0, and the pod's
  # address answers from inside the clone.
  podns=$(cri inspectp "$p" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path')
  [ "$(cri exec -s "$web" cat /sys/class/net/eth0/address)" = "$(nsenter --net="$podns" ip -o link show eth0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)" ]
  ip=$(cri inspectp "$p" | jq -r .status.network.ip)
  [ "$(curl -fs --retry 20 --retry-all-errors --retry-delay 1 "http://$ip/")" = "hello from the pod" ]
  cri stopp "$p" >/dev/null
  cri rmp "$p" >/dev/null
  shim_teardown "$C"
  [ ! -e "$podns" ]
  stop_containerd "$C"
  ip link del hullcri0
  hull factory destroy
  assert_no_leak
}
