#!/usr/bin/env bash
# Static checks, quick and without root: shellcheck over every shell file in
# the repo and go vet over both modules. scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

# Shell files are named *.sh, *.bash or *.bats, or start with a shell
# shebang (.ci/run); bats files are bash to shellcheck.
bats=() scripts=()
while IFS= read -r f; do
  [ -f "$f" ] || continue
  case $f in
    *.bats) bats+=("$f") ;;
    *.sh | *.bash) scripts+=("$f") ;;
    *) if head -n1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba)?sh$'; then scripts+=("$f"); fi ;;
  esac
done < <(git ls-files --cached --others --exclude-standard)
echo "== shellcheck: ${#scripts[@]} scripts, ${#bats[@]} bats files"
shellcheck -x "${scripts[@]}"
shellcheck -s bash "${bats[@]}"

echo "== go vet"
go vet ./...
go vet -tags integration ./tests/...
(cd bench && go vet ./...)
