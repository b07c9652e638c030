# Shared by the scripts that build something once into $HULL_CACHE: they
# build into a temporary directory and commit it here, so that a half build
# is never taken for a cached one. The caller defines `complete DIR`, which
# succeeds when DIR holds the whole build.

# cache_commit NAME TMP DIR renames the complete build TMP to DIR. Another
# run may have put a complete one there since the caller looked: that one
# stays; an incomplete one (a file removed by hand) goes.
cache_commit() {
  local name=$1 tmp=$2 dir=$3
  complete "$tmp" || { echo "$name: $tmp is incomplete" >&2; exit 1; }
  chmod 0755 "$tmp"
  if [ -e "$dir" ] && ! complete "$dir"; then rm -rf "$dir"; fi
  if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    complete "$dir" || { echo "$name: cannot move $tmp to $dir" >&2; exit 1; }
  fi
}
