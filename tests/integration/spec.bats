#!/usr/bin/env bats
# OCI conformance: the parts of the runtime-spec that a VM can honour, driven
# through the hull CLI and checked from inside the container. Each check runs
# the same bundle under runc on this host too, with the same assertions, so
# that "what runc does" is measured here, not remembered.

# The container's shell and awk expand what stands in single quotes here.
# shellcheck disable=SC2016
bats_require_minimum_version 1.5.0

load helpers

setup() {
  setup_hull
  command -v runc >/dev/null || { echo "runc missing: the conformance suite compares against it" >&2; return 1; }
  RUNC_ROOT=$T/runc
}

teardown() {
  local id
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
  done
  # Host mounts a test made for its volumes.
  grep -F -- "$T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount 2>/dev/null || true
  teardown_hull
}

# run_on RUNTIME BUNDLE ID: runs the bundle to its end with hull or runc;
# $status and $output as bats' run gives them.
run_on() {
  case $1 in
    hull) run hull run --bundle "$2" "$3" </dev/null ;;
    runc) run runc --root "$RUNC_ROOT" run --bundle "$2" "$3" </dev/null ;;
    *) echo "unknown runtime $1" >&2; return 1 ;;
  esac
  echo "$1 exit $status: $output"
}

# assert_has TEXT...: every TEXT is a line of $output.
assert_has() {
  local want
  for want in "$@"; do
    grep -qxF -- "$want" <<<"$output" || { echo "missing line '$want' in: $output" >&2; return 1; }
  done
}

@test "start and exec use the configuration create saw, whatever happens to config.json" {
  local rt
  for rt in runc hull; do
    B=$T/b-$rt; make_bundle "$B" sh -c 'echo "args=created env=$WHO"; exec sleep 600'
    edit_spec "$B" '.process.env += ["WHO=created"]'
    if [ "$rt" = hull ]; then
      hull create --bundle "$B" c-$rt </dev/null >"$T/out-$rt" 2>&1
    else
      runc --root "$RUNC_ROOT" create --bundle "$B" c-$rt </dev/null >"$T/out-$rt" 2>&1
    fi
    # Edit the file, then replace it with another one altogether.
    edit_spec "$B" '.process.args = ["sh", "-c", "echo args=edited"] | .process.env += ["WHO=edited"]'
    mv "$B/config.json" "$B/config.old"
    jq '.process.args = ["sh", "-c", "echo args=replaced"] | .hostname = "replaced"' "$B/config.old" > "$B/config.json"
    if [ "$rt" = hull ]; then
      hull start c-$rt
      wait_file "$T/out-$rt" "args=created env=created"
      # runc 1.1's inline exec re-reads the bundle's config.json for the
      # process it copies (env, cwd, user): it would print env=edited and
      # fail once the file is gone. hull keeps what create saw.
      run hull exec c-$rt sh -c 'echo "exec env=$WHO host=$(hostname)"'
      [ "$status" -eq 0 ]
      [ "$output" = "exec env=created host=hull" ]
      rm -f "$B/config.json"
      hull exec c-$rt true
      hull kill c-$rt KILL
      wait_status c-$rt stopped
      hull delete c-$rt
    else
      runc --root "$RUNC_ROOT" start c-$rt
      wait_file "$T/out-$rt" "args=created env=created"
      rm -f "$B/config.json"
      runc --root "$RUNC_ROOT" kill c-$rt KILL
      runc --root "$RUNC_ROOT" delete --force c-$rt
    fi
    run ! grep -q -e edited -e replaced "$T/out-$rt"
  done
  assert_no_leak
}

@test "linux.devices: each node with its type, numbers, mode and owner; resources.devices enforced" {
  local rt probe
  # /dev/fuse: in the guest kernel and on this host, not among the devices
  # every runtime allows, and opening it needs no capability, so only the
  # device cgroup decides.
  probe='stat -c "%n %F %t:%T %a %u:%g" /dev/fuse /dev/mynull; if true 3<>/dev/fuse; then echo opened; fi'
  for rt in runc hull; do
    B=$T/allow-$rt; make_bundle "$B" sh -c "$probe"
    edit_spec "$B" '.linux.devices = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 1000, "gid": 1001},
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 416, "uid": 1000, "gid": 1001}]
      | .linux.resources.devices += [{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]'
    run_on "$rt" "$B" allow-$rt
    [ "$status" -eq 0 ]
    assert_has "/dev/fuse character special file a:e5 666 1000:1001" "/dev/mynull character special file 1:3 640 1000:1001" opened

    B=$T/deny-$rt; make_bundle "$B" sh -c "$probe"
    edit_spec "$B" '.linux.devices = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438}]'
    run_on "$rt" "$B" deny-$rt
    [ "$status" -eq 0 ]
    assert_has "/dev/fuse character special file a:e5 666 0:0"
    [[ "$output" == *"Operation not permitted"* ]]
    run ! grep -qx opened <<<"$output"
  done
  assert_no_leak
}

@test "bind mount propagation and rootfsPropagation are the ones asked for" {
  local rt mode opt
  # The volume's source is a shared mount, so that a slave has a master.
  mkdir -p "$T/vol"
  mount --bind "$T/vol" "$T/vol"
  mount --make-shared "$T/vol"
  for rt in runc hull; do
    for mode in shared rshared slave rslave private rprivate unbindable runbindable; do
      B=$T/$rt-$mode; make_bundle "$B" awk '$5 == "/data"' /proc/self/mountinfo
      edit_spec "$B" ".linux.rootfsPropagation = \"rslave\"
        | .mounts += [{\"destination\": \"/data\", \"type\": \"bind\", \"source\": \"$T/vol\", \"options\": [\"rbind\", \"$mode\"]}]"
      run_on "$rt" "$B" "$rt-$mode"
      [ "$status" -eq 0 ]
      # The last mount at /data is the one the container sees.
      opt=$(tail -n 1 <<<"$output" | awk '{for (i = 7; $i != "-"; i++) printf "%s ", $i}')
      echo "$rt $mode: optional fields: $opt"
      case $mode in
        *shared) [[ "$opt" == *shared:* ]] ;;
        *slave) [[ "$opt" == *master:* && "$opt" != *shared:* ]] ;;
        *private) [[ "$opt" != *shared:* && "$opt" != *master:* && "$opt" != *unbindable* ]] ;;
        *unbindable) [[ "$opt" == *unbindable* ]] ;;
      esac
    done
    # rootfsPropagation: every value is taken. (What it changes is not
    # visible from inside a runc 1.1 container: a bind mount that asks for
    # nothing stays a peer of its host mount whatever the value is.)
    for mode in shared slave private; do
      B=$T/$rt-root-$mode; make_bundle "$B" awk '$5 == "/data"' /proc/self/mountinfo
      edit_spec "$B" ".linux.rootfsPropagation = \"$mode\"
        | .mounts += [{\"destination\": \"/data\", \"type\": \"bind\", \"source\": \"$T/vol\", \"options\": [\"rbind\"]}]"
      run_on "$rt" "$B" "$rt-root-$mode"
      [ "$status" -eq 0 ]
      opt=$(awk '{for (i = 7; $i != "-"; i++) printf "%s ", $i}' <<<"$output")
      echo "$rt rootfsPropagation $mode: optional fields: $opt"
    done
  done
  umount "$T/vol"
  assert_no_leak
}

@test "user namespace: the container runs with the uid and gid mappings asked for" {
  local rt
  # The mapped root must be able to reach its rootfs, as with any runtime.
  chmod 755 "$T"
  for rt in runc hull; do
    B=$T/b-$rt; make_bundle "$B" sh -c 'cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /tmp/x && stat -c "%u:%g" /tmp/x'
    edit_spec "$B" '.linux.namespaces += [{"type": "user"}]
      | .linux.uidMappings = [{"containerID": 0, "hostID": 100000, "size": 65536}]
      | .linux.gidMappings = [{"containerID": 0, "hostID": 200000, "size": 65536}]
      | .mounts |= map(select(.destination != "/sys/fs/cgroup"))
      | .mounts += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}]'
    run_on "$rt" "$B" "u-$rt"
    [ "$status" -eq 0 ]
    [ "$(sed -n 1p <<<"$output" | tr -s ' ' | sed 's/^ //')" = "0 100000 65536" ]
    [ "$(sed -n 2p <<<"$output" | tr -s ' ' | sed 's/^ //')" = "0 200000 65536" ]
    assert_has 0 "0:0"
  done
  assert_no_leak
}

@test "process.rlimits: soft and hard limits exactly as asked" {
  local rt
  for rt in runc hull; do
    B=$T/b-$rt; make_bundle "$B" cat /proc/self/limits
    edit_spec "$B" '.process.rlimits = [
      {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
      {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
      {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
      {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
      {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000}]'
    run_on "$rt" "$B" "r-$rt"
    [ "$status" -eq 0 ]
    [[ "$output" =~ Max\ open\ files\ +1000\ +2000\ +files ]]
    [[ "$output" =~ Max\ processes\ +300\ +400\ +processes ]]
    [[ "$output" =~ Max\ core\ file\ size\ +0\ +4096\ +bytes ]]
    [[ "$output" =~ Max\ stack\ size\ +4194304\ +8388608\ +bytes ]]
    [[ "$output" =~ Max\ msgqueue\ size\ +1000\ +2000\ +bytes ]]
  done
  assert_no_leak
}

@test "unknown annotation keys are never an error" {
  local rt
  for rt in runc hull; do
    B=$T/b-$rt; make_bundle "$B" sh -c 'echo ran'
    edit_spec "$B" '.annotations = {
      "com.example.unknown": "x",
      "io.katacontainers.config.hypervisor.kernel": "/etc/passwd",
      "io.kubernetes.cri-o.NoSuchKey": "",
      "hull.no-such-option": "{not json",
      "org.opencontainers.image.ref.name": "busybox"}'
    run_on "$rt" "$B" "a-$rt"
    [ "$status" -eq 0 ]
    assert_has ran
  done
  assert_no_leak
}

@test "read-only binds: ro is the top mount's only, rro the whole tree's, bind without r leaves submounts out; a read-only rootfs too" {
  local rt probe want
  # For each destination: is the source's submount there, can the top be
  # written, can the submount's directory be written (the tmpfs when it is
  # there, else the directory it hides). An error is named by its message.
  probe='for d in /a /b /c /d /e /f /g /; do
    if [ -e ${d%/}/sub/sub.txt ]; then v=visible; else v=hidden; fi
    e=$(touch ${d%/}/top-w 2>&1) && t=rw || t="ro(${e##*: })"
    e=$(touch ${d%/}/sub/sub-w 2>&1) && s=rw || s="ro(${e##*: })"
    echo "$d top=$t sub=$s submount=$v"
  done'
  for rt in runc hull; do
    # The volume: a directory with a file, and a tmpfs mounted under it
    # with a file of its own. The rootfs gets the same kind of submount.
    mkdir -p "$T/src-$rt/sub"
    echo top > "$T/src-$rt/top.txt"
    mount -t tmpfs "sub-$rt" "$T/src-$rt/sub"
    echo sub > "$T/src-$rt/sub/sub.txt"
    B=$T/b-$rt; make_bundle "$B" sh -c "$probe"
    mkdir -p "$B/rootfs/sub"
    mount -t tmpfs "rootsub-$rt" "$B/rootfs/sub"
    echo sub > "$B/rootfs/sub/sub.txt"
    # /f and /g: hull's guest binds a shared mount again from the share
    # after the runtime placed it; its submount must come along.
    edit_spec "$B" ".root.readonly = true | .mounts += [
      {destination: \"/a\", type: \"bind\", source: \"$T/src-$rt\", options: [\"rbind\", \"ro\"]},
      {destination: \"/b\", type: \"bind\", source: \"$T/src-$rt\", options: [\"bind\", \"ro\"]},
      {destination: \"/c\", type: \"bind\", source: \"$T/src-$rt\", options: [\"rbind\", \"rro\"]},
      {destination: \"/d\", type: \"bind\", source: \"$T/src-$rt\", options: [\"rbind\"]},
      {destination: \"/e\", type: \"bind\", source: \"$T/src-$rt\", options: [\"bind\"]},
      {destination: \"/f\", type: \"bind\", source: \"$T/src-$rt\", options: [\"rbind\", \"ro\", \"rshared\"]},
      {destination: \"/g\", type: \"bind\", source: \"$T/src-$rt\", options: [\"rbind\", \"ro\", \"shared\"]}]"
    run_on "$rt" "$B" "ro-$rt"
    [ "$status" -eq 0 ]
    # What runc 1.1 does, measured by the same run under runc.
    want=(
      "/a top=ro(Read-only file system) sub=rw submount=visible"
      "/b top=ro(Read-only file system) sub=ro(Read-only file system) submount=hidden"
      "/c top=ro(Read-only file system) sub=ro(Read-only file system) submount=visible"
      "/d top=rw sub=rw submount=visible"
      "/e top=rw sub=rw submount=hidden"
      "/f top=ro(Read-only file system) sub=rw submount=visible"
      "/g top=ro(Read-only file system) sub=rw submount=visible"
      "/ top=ro(Read-only file system) sub=rw submount=visible")
    assert_has "${want[@]}"
    [ "$(wc -l <<<"$output")" -eq ${#want[@]} ]
    # Writes land on the host where they would under runc: into the tmpfs
    # through /a and /d, beneath it through /e.
    [ -e "$T/src-$rt/sub/sub-w" ]
    [ -e "$B/rootfs/sub/sub-w" ]
    umount "$T/src-$rt/sub" "$B/rootfs/sub"
    [ -e "$T/src-$rt/sub/sub-w" ]
  done
  assert_no_leak
}
