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
echo "bats: $(grep -c '^ok ' "$results") passed, $(grep -c '^not ok ' "$results") failed"
exit "$rc"
