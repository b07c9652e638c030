#!/usr/bin/env bash
# The whole test suite: static checks (shellcheck, go vet), unit tests (no
# root, no VM), then the integration suites that boot real VMs under QEMU.
# Installs its own packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/root/go/bin
bash scripts/deps.sh
bash scripts/lint.sh
make all
echo "== unit tests"
go test ./...
echo "== fuzz (bounded)"
for target in pod:FuzzParseConfig ocicli:FuzzSpec guest:FuzzCreateContainer guest:FuzzParseCmdline; do
  go test -run='^$' -fuzz="^${target#*:}\$" -fuzztime=10s "./${target%%:*}"
done
echo "== integration: sandbox VM core (Go)"
go test -tags integration -count=1 -timeout 20m ./tests/integration/
echo "== integration: bats suites"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
rc=0
bats tests/integration/*.bats | tee "$results" || rc=$?
# The CRI suite again through hull's containerd shim (handler hull-v2), and
# the containerd suites on containerd 2.x (scripts/containerd2.sh, cached).
echo "== integration: the CRI suite through containerd-shim-hull-v2"
HULL_CRI_HANDLER=hull-v2 bats tests/integration/cri-containerd.bats | tee -a "$results" || rc=$?
echo "== integration: containerd 2.x, both handlers"
HULL_CONTAINERD=2 bats tests/integration/shim.bats | tee -a "$results" || rc=$?
for handler in hull hull-v2; do
  HULL_CONTAINERD=2 HULL_CRI_HANDLER=$handler bats tests/integration/cri-containerd.bats | tee -a "$results" || rc=$?
done
# The suites above share containers over hull's default shared_fs; the CLI
# and CRI suites, the share's confinement tests and the submounts' flags
# run again over the other one (helpers.bash's write_config reads
# HULL_SHARED_FS).
default_fs=$(build/hull --config /dev/null env | sed -n '/^\[shared_fs\]/,/^\[/s/^ *type = "\(.*\)"$/\1/p')
case $default_fs in
  virtio-9p) other_fs=virtio-fs ;;
  virtio-fs) other_fs=virtio-9p ;;
  *) echo "test.sh: default shared_fs.type is '$default_fs'?" >&2; exit 1 ;;
esac
echo "== integration: bats suites again over $other_fs"
export HULL_SHARED_FS=$other_fs
bats tests/integration/cli.bats tests/integration/cri-containerd.bats tests/integration/shim.bats | tee -a "$results" || rc=$?
share_tests=$(mktemp)
trap 'rm -f "$results" "$share_tests"' EXIT
bats -f '^(symlinks planted|the guest sees only the share|the guest cannot unmount|read-only binds)' \
  tests/integration/faults.bats tests/integration/spec.bats | tee "$share_tests" || rc=$?
cat "$share_tests" >> "$results"
# A filter that matches nothing runs nothing, and bats calls that success.
[ "$(grep -c '^ok ' "$share_tests")" = 4 ] || { echo "test.sh: the share tests of faults.bats and spec.bats did not all pass over $other_fs" >&2; rc=1; }
# Templating both ways: the runc-compatible, containerd, docker and CRI
# suites again with every sandbox of the template's shape started as a
# clone of a VM template (write_config makes one for HULL_TEMPLATE; the
# suites check that their VMs are clones). Lone containers have no NIC;
# docker's containers and CRI pods have one.
echo "== integration: bats suites again with sandboxes cloned from a VM template"
unset HULL_SHARED_FS
HULL_TEMPLATE=1 bats tests/integration/cli.bats tests/integration/shim.bats | tee -a "$results" || rc=$?
HULL_TEMPLATE=1 HULL_TEMPLATE_NICS=1 bats tests/integration/docker.bats | tee -a "$results" || rc=$?
for handler in hull hull-v2; do
  HULL_TEMPLATE=1 HULL_TEMPLATE_NICS=1 HULL_CRI_HANDLER=$handler bats tests/integration/cri-containerd.bats | tee -a "$results" || rc=$?
done
echo "bats: $(grep -c '^ok ' "$results") passed, $(grep -c '^not ok ' "$results") failed"
exit "$rc"
