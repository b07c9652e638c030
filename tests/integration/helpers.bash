# Shared set-up for hull's bats suites. Every suite boots real VMs under QEMU
# and needs root; without them it fails (never skips).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${HULL_BUILD:-$REPO/build}
HULL_BIN=${HULL_BIN:-$BUILD/hull}
RECVTTY=$BUILD/recvtty

require_host() {
  [ "$(id -u)" = 0 ] || { echo "hull integration tests need root" >&2; return 1; }
  command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 missing" >&2; return 1; }
  command -v jq >/dev/null || { echo "jq missing" >&2; return 1; }
  for f in "$HULL_BIN" "$BUILD/vmlinux-hull" "$BUILD/guest-root/init" "$RECVTTY"; do
    [ -e "$f" ] || { echo "$f missing: run make" >&2; return 1; }
  done
}

# setup_hull gives each test its own state root, config and bundle dir.
setup_hull() {
  require_host
  T=$(mktemp -d /tmp/hull-bats.XXXXXX)
  ROOT=$T/root
  NETNS=() # what make_pod_netns made
  write_config "$T/hull.toml"
}

# write_config FILE: the suites' hull configuration (TCG unless HULL_ACCEL
# says otherwise, the built guest: its root directory over 9p, or
# HULL_INITRD; the share over HULL_SHARED_FS, virtio-9p or virtio-fs, else
# hull's default), exported as HULL_CONFIG. With HULL_TEMPLATE=1 sandboxes
# start from a VM template instead ([factory], in FILE's directory, with
# HULL_TEMPLATE_NICS NICs, default 0), made here: the initrd and the 9p
# share that templating needs; remove_template removes it.
write_config() {
  export HULL_CONFIG=$1
  local image="guest_root = \"$BUILD/guest-root\"" shared_fs=""
  if [ -n "${HULL_INITRD:-}" ]; then image="initrd = \"$HULL_INITRD\""; fi
  if [ -n "${HULL_SHARED_FS:-}" ]; then shared_fs="type = \"$HULL_SHARED_FS\""; fi
  if [ -n "${HULL_TEMPLATE:-}" ]; then
    image="initrd = \"$BUILD/initrd-hull.img\""; shared_fs='type = "virtio-9p"'
  fi
  cat > "$HULL_CONFIG" <<TOML
[hypervisor]
accel = "${HULL_ACCEL:-tcg}"
kernel = "${HULL_KERNEL:-$BUILD/vmlinux-hull}"
$image
default_memory = 256

[shared_fs]
$shared_fs
TOML
  if [ -n "${HULL_TEMPLATE:-}" ]; then
    cat >> "$HULL_CONFIG" <<TOML

[factory]
template = true
dir = "$(dirname "$1")/factory"
nics = ${HULL_TEMPLATE_NICS:-0}
TOML
    "$HULL_BIN" factory init >/dev/null || return 1
  fi
}

hull() { "$HULL_BIN" --root "$ROOT" "$@"; }

# shared_fs prints the share's file system in effect: virtio-9p or virtio-fs.
shared_fs() {
  "$HULL_BIN" env | sed -n '/^\[shared_fs\]/,/^\[/s/^ *type = "\(.*\)"$/\1/p'
}

# make_bundle DIR ARGS... makes a busybox-static bundle running ARGS.
make_bundle() {
  local dir=$1; shift
  mkdir -p "$dir/rootfs"/{bin,proc,sys,dev,tmp,etc,data,www}
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"
  done
  (cd "$dir" && "$HULL_BIN" spec)
  local args
  args=$(jq -n -c '$ARGS.positional' --args -- "$@")
  edit_spec "$dir" ".process.terminal = false | .root.readonly = false | .process.args = $args"
}

# make_pod_netns N [NET]: a network namespace as a CNI plugin leaves it: a
# veth whose host end is NET.N.1/24 (NET defaults to 10.77) and whose other
# end, eth0, is NET.N.2 with a default route through the host end. Sets NS
# to its path and adds it to NETNS, which remove_pod_netns deletes.
make_pod_netns() {
  local ns=hullpod$$-$1 net=${2:-10.77}
  ip netns add "$ns"
  NETNS+=("$ns")
  ip link add "hp$$n$1" type veth peer name eth0 netns "$ns"
  ip addr add "$net.$1.1/24" dev "hp$$n$1"; ip link set "hp$$n$1" up
  ip -n "$ns" addr add "$net.$1.2/24" dev eth0; ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$net.$1.1"
  # shellcheck disable=SC2034 # for the caller
  NS=/var/run/netns/$ns
}

# remove_pod_netns deletes the namespaces make_pod_netns made (and their
# veths with them).
remove_pod_netns() {
  local ns
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NETNS=()
}

# edit_spec DIR JQ-FILTER edits DIR/config.json in place.
edit_spec() {
  jq "$2" "$1/config.json" > "$1/config.json.new" && mv "$1/config.json.new" "$1/config.json"
}

# wait_status ID STATUS [SECONDS]
wait_status() {
  local _
  for _ in $(seq 1 $(( ${3:-30} * 10 ))); do
    [ "$(hull state "$1" 2>/dev/null | jq -r .status)" = "$2" ] && return 0
    sleep 0.1
  done
  echo "container $1 never reached $2 (now: $(hull state "$1" 2>&1))" >&2
  return 1
}

# wait_file FILE PATTERN [SECONDS]
wait_file() {
  local _
  for _ in $(seq 1 $(( ${3:-30} * 10 ))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 never contained '$2'; it has: $(cat "$1" 2>&1)" >&2
  return 1
}

# wait_exists FILE [SECONDS]
wait_exists() {
  local _
  for _ in $(seq 1 $(( ${2:-30} * 10 ))); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  echo "$1 never appeared" >&2
  return 1
}

# exited PID succeeds once the process has exited: it is gone, or a zombie
# its parent has not reaped yet. A proxy or QEMU whose parent went is
# reaped by PID 1, which may take seconds; kill -0 still reaches a zombie.
exited() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [ "${stat%% *}" = Z ]
}

# wait_ps_without TEXT CMD...: runs CMD (a ps in a container) until its
# output no longer holds TEXT, 20 s at most; fails if it still does. The last
# output is in $output and on stderr.
wait_ps_without() {
  local text=$1; shift
  for _ in $(seq 1 100); do
    output=$("$@" 2>&1) || true
    [[ "$output" != *"$text"* ]] && return 0
    sleep 0.2
  done
  echo "after 20 s, still '$text' in: $output" >&2
  return 1
}

# leaks prints what a test left behind under $T: QEMU or hull processes,
# mounts, state.
leaks() {
  local p
  for p in $(pgrep -f -- "$T" || true); do
    [ "$p" = "$$" ] && continue
    echo "process $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"
  done
  mountinfo_under "$T" | sed 's/^/mount /' || true
  if [ -d "$ROOT/containers" ]; then find "$ROOT/containers" -mindepth 1 -maxdepth 1 | sed 's/^/state /'; fi
  if [ -d "$ROOT/sandboxes" ]; then find "$ROOT/sandboxes" -mindepth 1 -maxdepth 1 | sed 's/^/sandbox /'; fi
}

# kill_and_unmount DIR SIGKILLs every process whose command line names DIR
# and lazily unmounts everything under it, deepest first, so DIR can go.
kill_and_unmount() {
  local p
  for p in $(pgrep -f -- "$1" || true); do kill -9 "$p" 2>/dev/null || true; done
  grep -F -- "$1" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# stop_daemon PIDFILE SECONDS: SIGTERM to the daemon, SIGKILL if it is still
# there after SECONDS.
stop_daemon() {
  [ -f "$1" ] || return 0
  local pid _
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 $(( $2 * 5 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
}

# teardown_hull deletes whatever the test left, then fails if anything of it
# is still there.
teardown_hull() {
  [ -n "${ROOT:-}" ] || return 0
  local id
  for id in $(hull list -q 2>/dev/null); do hull delete --force "$id" >/dev/null 2>&1 || true; done
  remove_template "$T/hull.toml"
  local left
  left=$(leaks)
  if [ -n "$left" ]; then
    echo "LEAKED:" >&2; echo "$left" >&2
    kill_and_unmount "$T"
    return 1
  fi
  rm -rf "$T"
}

# mountinfo_under DIR: the lines of /proc/self/mountinfo that name DIR,
# but for the tmpfs of HULL_TEMPLATE's template in DIR/factory while it is
# published: it is the suite's until remove_template.
mountinfo_under() {
  local template=/nonexistent/ dir=${1%/}
  [ -z "${HULL_TEMPLATE:-}" ] || [ ! -e "$dir/factory/template.json" ] || template=" $dir/factory "
  grep -F -- "$1" /proc/self/mountinfo | grep -vF -- "$template"
}

# remove_template CONFIG: under HULL_TEMPLATE, `hull factory destroy` of the
# template write_config made for CONFIG.
remove_template() {
  [ -n "${HULL_TEMPLATE:-}" ] || return 0
  HULL_CONFIG=$1 "$HULL_BIN" factory destroy
}

# template_clones DIR: how many QEMUs run as clones of the template in
# DIR/factory (they map its RAM copy-on-write and load its state).
template_clones() { pgrep -fc -- "qemu-system.*mem-path=$1/factory/t-[0-9]*/memory,share=off.* -incoming defer" || true; }

# sandbox_info ID FIELD: a field of the published info of the sandbox of a
# lone container ID (its directory is named by the ID's hash).
sandbox_info() {
  local dir
  dir=$(printf %s "$1" | sha256sum | cut -c1-16)
  jq -r ".$2 // empty" "$ROOT/sandboxes/$dir/sandbox.json"
}

# assert_clone ID: under HULL_TEMPLATE, fails unless the sandbox of the lone
# container ID started as a clone of the template.
assert_clone() {
  [ -n "${HULL_TEMPLATE:-}" ] || return 0
  [ -n "$(sandbox_info "$1" template)" ] || { echo "sandbox of $1 booted cold under HULL_TEMPLATE" >&2; return 1; }
}

# run_ten PREFIX [HULL-OPTIONS...]: `hull run` of bundles $T/PREFIX1..10
# (container IDs the same) all at once, their output in $T/PREFIXi.out and
# .err; container i must exit with status i.
run_ten() {
  local p=$1 i rc pids=()
  shift
  for i in $(seq 1 10); do
    hull "$@" run --bundle "$T/$p$i" "$p$i" </dev/null >"$T/$p$i.out" 2>"$T/$p$i.err" &
    pids[i]=$!
  done
  for i in $(seq 1 10); do
    rc=0; wait "${pids[$i]}" || rc=$?
    [ "$rc" -eq "$i" ] || { echo "run $p$i: exit $rc, want $i: $(cat "$T/$p$i.err")" >&2; return 1; }
  done
}

# assert_no_leak fails the test now if something is left.
assert_no_leak() {
  local left
  left=$(leaks)
  [ -z "$left" ] || { echo "LEAKED: $left" >&2; return 1; }
}
