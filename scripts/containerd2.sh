#!/usr/bin/env bash
# Builds containerd 2.x (containerd, ctr and its own runc shim) from the Go
# module proxy, for the suites that drive containerd 2's CRI beside Debian
# 12's containerd 1.6 (not packaged there). Cached by version under
# $HULL_CACHE, so only the first run pays the build (minutes on two cores).
# The build goes to a temporary directory renamed into place once complete:
# an interrupted build is never taken for a cached one.
#
# containerd-shim-runc-v2 is built too: containerd 2 only falls back to
# 1.6's shim (Debian's, on PATH) through a compatibility path; the suites put
# this bin directory on the PATH of the containerd 2 they start.
#
# No btrfs snapshotter (no_btrfs, as containerd's BUILDING.md says) and no
# cgo: a static binary, not tied to the host's libc, that the suites only
# ever run with the native snapshotter. containerd 2.2 needs Go 1.25; an
# older go fetches that toolchain itself (GOTOOLCHAIN=auto).
#
# usage: containerd2.sh   (prints the bin directory)
set -euo pipefail
# shellcheck source=scripts/cache.bash
source "$(dirname "$0")/cache.bash"
version=v2.2.9
cache=${HULL_CACHE:-/var/cache/hull}
dir=$cache/containerd-$version
bins=(containerd ctr containerd-shim-runc-v2)

complete() {
  local b
  for b in "${bins[@]}"; do [ -x "$1/bin/$b" ] || return 1; done
}

if complete "$dir"; then
  echo "$dir/bin"
  exit 0
fi
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "containerd2: go missing (Go 1.22 or newer)" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mod=github.com/containerd/containerd/v2
pkgs=()
for b in "${bins[@]}"; do pkgs+=("$mod/cmd/$b@$version"); done
echo "containerd2: building containerd $version into $dir" >&2
GOBIN=$tmp/bin GOFLAGS='' CGO_ENABLED=0 go install -trimpath \
  -tags 'no_btrfs urfave_cli_no_docs' \
  -ldflags "-s -w -X $mod/version.Version=$version" "${pkgs[@]}" >&2
cache_commit containerd2 "$tmp" "$dir"
echo "$dir/bin"
