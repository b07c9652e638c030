#!/usr/bin/env bats
# podman end to end: Debian 12's podman 4.3 and its conmon with
# `--runtime $BUILD/hull`. Storage, run state, network configuration and
# events live in a private directory; images come from `podman import`, no
# registry.
#
# hull keeps its state in its default root: podman's cleanup process (the
# exit command conmon runs when a container exits) calls the runtime
# without --runtime-flag and with a scrubbed environment, so a --root given
# there would not reach it, and the container it cannot find would be left
# running. The leak checks look at the test's own containers in that root.
# Global, and podman 4.3's own as root whatever it is told: its image digest
# cache (/var/lib/containers/cache), netavark's IP allocations
# (/run/containers/networks, released at rm) and iptables chains.

load helpers

PODMAN=/usr/bin/podman

setup_file() {
  require_host
  [ -x "$PODMAN" ] || { echo "podman missing (apt-get install podman)" >&2; return 1; }
  command -v catatonit >/dev/null || { echo "catatonit missing (apt-get install catatonit): podman's pods need it" >&2; return 1; }
  [ -x /usr/lib/podman/netavark ] || { echo "netavark missing (apt-get install netavark)" >&2; return 1; }
  P=$(mktemp -d /tmp/hull-podman.XXXXXX)
  export P
  write_config "$P/hull.toml"
  mkdir -p "$P/net" "$P/tmp"
  # The exit command conmon runs gets conmon's environment only: the same
  # configuration must reach it there.
  cat > "$P/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events.log"
tmp_dir = "$P/tmp"
static_dir = "$P/storage/libpod"
volume_path = "$P/volumes"
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF=$P/containers.conf", "CONTAINERS_STORAGE_CONF=$P/storage.conf", "CONTAINERS_REGISTRIES_CONF=$P/registries.conf"]

[network]
network_backend = "netavark"
network_config_dir = "$P/net"
default_network = "hullnet"
CONF
  cat > "$P/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$P/storage"
runroot = "$P/run"
CONF
  echo 'unqualified-search-registries = []' > "$P/registries.conf"
  # The default network, with a bridge and subnet of its own.
  cat > "$P/net/hullnet.json" <<JSON
{"name": "hullnet", "id": "$(printf %s "$P" | sha256sum | cut -c1-64)", "driver": "bridge",
 "network_interface": "hullpm0", "created": "2026-11-29T00:00:00Z",
 "subnets": [{"subnet": "10.89.77.0/24", "gateway": "10.89.77.1"}],
 "ipv6_enabled": false, "internal": false, "dns_enabled": false, "ipam_options": {"driver": "host-local"}}
JSON
  export CONTAINERS_CONF=$P/containers.conf CONTAINERS_STORAGE_CONF=$P/storage.conf CONTAINERS_REGISTRIES_CONF=$P/registries.conf
  HROOT=$("$HULL_BIN" env | sed -n 's/^# state root: //p')
  export HROOT
  find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' > "$P/netns.before" 2>/dev/null || true
  echo - >> "$P/netns.before" # never empty: grep -f of an empty file matches nothing
  # A busybox-static image with a web page, made without a registry.
  local rootfs=$P/img
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  echo "hello from the VM" > "$rootfs/www/index.html"
  tar -C "$rootfs" -c . | pm import -c 'ENV PATH=/bin' - hull-busybox >/dev/null
}

teardown_file() {
  [ -n "${P:-}" ] || return 0
  pm pod rm -af -t 0 >/dev/null 2>&1 || true
  pm rm -af -t 0 >/dev/null 2>&1 || true
  force_clean
  rm -rf "$P"
}

# Each test leaves nothing: what it did not remove is removed here, and the
# test fails.
teardown() {
  local left
  left=$(leaks)
  [ -z "$left" ] && return 0
  echo "LEAKED (before cleanup):" >&2; echo "$left" >&2
  pm pod rm -af -t 0 >/dev/null 2>&1 || true
  pm rm -af -t 0 >/dev/null 2>&1 || true
  force_clean
  return 1
}

pm() { "$PODMAN" --runtime "$HULL_BIN" --runtime-flag "config=$HULL_CONFIG" "$@"; }

# ids: every container the suite made, infra containers and --rm ones too.
ids() { jq -r 'select(.Type == "container") | .ID' "$P/events.log" 2>/dev/null | sort -u; }

# sandbox_of ID: hull's sandbox directory of a container that owns one.
sandbox_of() { echo "$HROOT/sandboxes/$(printf %s "$1" | sha256sum | cut -c1-16)"; }

# qemus: QEMU processes of the suite's sandboxes.
qemus() {
  local id n=0 c
  for id in $(ids); do
    c=$(pgrep -fc -- "qemu-system.*$(sandbox_of "$id")/" || true)
    n=$((n + c))
  done
  echo "$n"
}

# leaks prints what is left of the suite's containers: hull state,
# sandboxes, QEMU, monitors, proxies and conmon, mounts, network
# namespaces and the bridge.
leaks() {
  local id sb p
  for id in $(ids); do
    sb=$(sandbox_of "$id")
    [ ! -e "$HROOT/containers/$id" ] || echo "state $id"
    [ ! -e "$sb" ] || echo "sandbox $sb of $id"
    [ ! -e "$sb.monitor" ] || echo "monitor ref $sb.monitor"
    [ ! -e "$HROOT/netns/$id" ] || echo "netns $HROOT/netns/$id"
    for p in $(pgrep -f -- "$sb/" || true); do echo "process $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"; done
    grep -F -- "$sb" /proc/self/mountinfo | sed 's/^/mount /' || true
  done
  for p in $(pgrep -f -- "$P" || true); do
    [ "$p" = "$$" ] || echo "process $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"
  done
  grep -F -- "$P" /proc/self/mountinfo | sed 's/^/mount /' || true
  new_netns | sed 's/^/netns /'
  ! ip link show hullpm0 >/dev/null 2>&1 || echo "bridge hullpm0"
}

# new_netns: network namespaces podman made since the suite started.
new_netns() {
  find /run/netns -mindepth 1 -maxdepth 1 -name 'netns-*' -printf '%f\n' 2>/dev/null | grep -vxF -f "$P/netns.before" || true
}

# force_clean removes by force what podman did not.
force_clean() {
  local id p
  for id in $(ids); do
    [ ! -e "$HROOT/containers/$id" ] || "$HULL_BIN" delete --force "$id" >/dev/null 2>&1 || true
  done
  for p in $(pgrep -f -- "$P" || true); do kill -9 "$p" 2>/dev/null || true; done
  grep -F -- "$P" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  for p in $(new_netns); do ip netns del "$p" 2>/dev/null || true; done
  ip link del hullpm0 2>/dev/null || true
}

@test "podman run: the guest kernel; exit codes pass through" {
  run pm run --rm hull-busybox uname -r
  echo "$output"
  [ "$status" -eq 0 ]
  [ -n "$output" ]
  [ "$output" != "$(uname -r)" ]
  run pm run --rm hull-busybox sh -c 'exit 3'
  [ "$status" -eq 3 ]
}

@test "podman run -d -p 18080:80: HTTP from inside the VM on 127.0.0.1 and the container IP; exec, logs, stop, rm" {
  pm run -d --name web -p 18080:80 hull-busybox \
    sh -c 'trap "echo got-term; exit 0" TERM; echo started; httpd -f -p 80 -h /www & wait'
  [ "$(qemus)" = 1 ]
  run curl -fs --retry 30 --retry-all-errors --retry-delay 1 http://127.0.0.1:18080/
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "hello from the VM" ]
  ip=$(pm inspect -f '{{.NetworkSettings.IPAddress}}' web)
  [[ "$ip" == 10.89.77.* ]]
  run curl -fsS -m 10 "http://$ip/"
  [ "$output" = "hello from the VM" ]
  run pm exec web cat /proc/version
  [ "$status" -eq 0 ]
  [[ "$output" == *"Linux version"* ]]
  [[ "$output" != *"$(uname -r)"* ]]
  run pm exec web sh -c 'exit 4'
  [ "$status" -eq 4 ]
  start=$(date +%s)
  pm stop web
  [ $(( $(date +%s) - start )) -lt 10 ]
  [ "$(pm inspect -f '{{.State.ExitCode}}' web)" = 0 ]
  run pm logs web
  [[ "$output" == *started* ]]
  [[ "$output" == *got-term* ]]
  pm rm web
  [ -z "$(leaks)" ]
}

@test "podman run -t and -it: the workload gets a terminal" {
  run pm run --rm -t hull-busybox tty
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == /dev/pts/* ]]
  # -it from a terminal, as a user types it.
  run script -qec "$PODMAN --runtime $HULL_BIN --runtime-flag config=$HULL_CONFIG run --rm -it hull-busybox sh -c 'tty; stty size; exit 5'" /dev/null
  echo "$output"
  [ "$status" -eq 5 ]
  [[ "$output" == *"/dev/pts/"* ]]
}

@test "podman run --memory 300m sizes the VM" {
  run pm run --rm --memory 300m hull-busybox grep MemTotal /proc/meminfo
  echo "$output"
  [ "$status" -eq 0 ]
  mem_kb=$(echo "$output" | awk '{print $2}')
  # 300 MiB plus the guest overhead (128 MiB), less what the kernel keeps.
  [ "$mem_kb" -gt $(( 300 * 1024 )) ]
  [ "$mem_kb" -lt $(( 450 * 1024 )) ]
}

@test "a podman pod: its containers share one VM, localhost and the infra container's IPC and UTS namespaces" {
  pm pod create --name p1 -p 18081:8080
  pm run -d --pod p1 --name web hull-busybox httpd -f -p 8080 -h /www
  pm run -d --pod p1 --name cli hull-busybox sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  [ "$(pm pod inspect -f '{{.NumContainers}}' p1)" = 3 ]
  # The infra container boots the VM; the two join it.
  [ "$(qemus)" = 1 ]
  # shellcheck disable=SC2016 # expanded in the container
  run pm exec cli sh -c 'for i in $(seq 1 30); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1'
  [ "$status" -eq 0 ]
  [ "$output" = "hello from the VM" ]
  run curl -fs --retry 30 --retry-all-errors --retry-delay 1 http://127.0.0.1:18081/
  [ "$output" = "hello from the VM" ]
  [ "$(pm exec cli readlink /proc/self/ns/ipc)" = "$(pm exec web readlink /proc/self/ns/ipc)" ]
  [ "$(pm exec cli readlink /proc/self/ns/uts)" = "$(pm exec web readlink /proc/self/ns/uts)" ]
  [ "$(pm exec cli readlink /proc/self/ns/mnt)" != "$(pm exec web readlink /proc/self/ns/mnt)" ]
  [ "$(pm exec web uname -r)" != "$(uname -r)" ]
  # One container of the pod goes; the pod's VM stays.
  pm rm -f -t 0 cli
  [ "$(qemus)" = 1 ]
  run pm exec web wget -qO- http://127.0.0.1:8080/
  echo "$output"
  [ "$output" = "hello from the VM" ]
  pm pod rm -f -t 0 p1
  [ -z "$(leaks)" ]
}

@test "podman run --net=container: --ipc=container: joins that container's VM (no annotations, only the paths)" {
  pm run -d --name web hull-busybox httpd -f -p 127.0.0.1:8080 -h /www
  pm run -d --name side --net container:web --ipc container:web hull-busybox \
    sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  [ "$(qemus)" = 1 ]
  # shellcheck disable=SC2016 # expanded in the container
  run pm exec side sh -c 'for i in $(seq 1 30); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1'
  [ "$status" -eq 0 ]
  [ "$output" = "hello from the VM" ]
  [ "$(pm exec side readlink /proc/self/ns/ipc)" = "$(pm exec web readlink /proc/self/ns/ipc)" ]
  pm rm -f -t 0 side
  pm rm -f -t 0 web
  [ -z "$(leaks)" ]
}

@test "podman rm -f of a running container leaves nothing" {
  pm run -d --name gone hull-busybox sleep 600
  [ "$(qemus)" = 1 ]
  pm rm -f -t 0 gone
  [ -z "$(leaks)" ]
}

@test "podman run --net=host is refused with a clear error" {
  run pm run --rm --net=host hull-busybox true
  echo "$output"
  [ "$status" -ne 0 ]
  [[ "$output" == *"host networking cannot work in a VM"* ]]
}
