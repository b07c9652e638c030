#!/usr/bin/env bats
# QEMU confinement: what a compromised QEMU still holds, read from
# /proc/<qemu pid>/status and /proc/<qemu pid>/root. Each check is also run
# with the confinement turned off, where it must fail.

bats_require_minimum_version 1.5.0 # run !

load helpers

setup() { setup_hull; }
teardown() { teardown_hull; }

# qemu_pid: the PID of the test's one QEMU.
qemu_pid() { jq -r .qemuPid "$ROOT"/sandboxes/*/sandbox.json | head -1; }

# proc_field PID FIELD: a field of /proc/PID/status.
proc_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# hypervisor_option LINE: adds LINE to the [hypervisor] table of the config.
hypervisor_option() { sed -i "/^\[hypervisor\]/a $1" "$HULL_CONFIG"; }

@test "with the virtio-fs share (the default): QEMU in an empty chroot, unprivileged, without capabilities" {
  HULL_SHARED_FS=virtio-fs write_config "$T/hull-virtiofs.toml"
  B=$T/b; make_bundle "$B" sleep 600
  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  hull start c1
  qemu=$(qemu_pid)
  [ "$(proc_field "$qemu" Seccomp)" = 2 ]
  [ "$(proc_field "$qemu" Uid)" = "$(id -u hull-qemu)" ]
  [ "$(proc_field "$qemu" Gid)" = "$(id -g hull-qemu)" ]
  [ "$(readlink "/proc/$qemu/root")" = "$(dirname "$(ls -d "$ROOT"/sandboxes/*/sandbox.json)")/qemu-root" ]
  [ "$(proc_field "$qemu" CapEff)" = 0000000000000000 ]
  [ -z "$(ls -A "/proc/$qemu/root/")" ]
  # The container works: virtiofsd, not QEMU, reads its files.
  run hull exec c1 sh -c 'cat /bin/busybox > /dev/null && echo read-ok'
  [ "$output" = read-ok ]
  hull delete --force c1
  assert_no_leak

  # The same checks, with the chroot and the user turned off, fail.
  hypervisor_option 'chroot = false'
  hypervisor_option 'qemu_user = ""'
  hull create --bundle "$B" c2 </dev/null >/dev/null 2>&1
  qemu=$(qemu_pid)
  [ "$(proc_field "$qemu" Uid)" = 0 ]
  [ "$(proc_field "$qemu" CapEff)" != 0000000000000000 ]
  [ -n "$(ls -A "/proc/$qemu/root/")" ]
  hull delete --force c2
  assert_no_leak
}

@test "with the 9p share: QEMU under its full seccomp filter, uid 0 kept, and hull says why" {
  HULL_SHARED_FS=virtio-9p write_config "$T/hull-9p.toml"
  B=$T/b; make_bundle "$B" sleep 600
  hull create --bundle "$B" c1 </dev/null >/dev/null 2>&1
  qemu=$(qemu_pid)
  [ "$(proc_field "$qemu" Seccomp)" = 2 ]
  [[ "$(tr '\0' ' ' < "/proc/$qemu/cmdline")" == *"elevateprivileges=deny"* ]]
  run hull check
  [[ "$output" == *"qemu confinement seccomp filter; not applied: chroot: QEMU's 9p server"*"user: QEMU serves the virtio-9p share"* ]]
  hull delete --force c1
  assert_no_leak

  # The same check, with the filter turned off, finds none.
  hypervisor_option "seccomp = false"
  hull create --bundle "$B" c2 </dev/null >/dev/null 2>&1
  qemu=$(qemu_pid)
  [ "$(proc_field "$qemu" Seccomp)" = 0 ]
  run hull check
  [[ "$output" == *"not applied: seccomp: off in the configuration"* ]]
  hull delete --force c2
  assert_no_leak
}
