#!/usr/bin/env bash
# The demo: a container in its own VM prints the guest kernel next to the
# host's, then a web server in another VM answers an HTTP request from the
# host. Expects `make install` to have run (make demo does both).
set -euo pipefail
HULL=${HULL:-/usr/local/bin/hull}
work=$(mktemp -d /tmp/hull-demo.XXXXXX)
root=$work/root
ns=hulldemo$$
cleanup() {
  "$HULL" --root "$root" delete --force web >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "hd$$" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bundle() { # DIR ARGS... : a busybox-static bundle running ARGS
  local dir=$1; shift
  mkdir -p "$dir/rootfs"/{bin,proc,sys,dev,tmp,etc,www}
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"; done
  (cd "$dir" && "$HULL" spec)
  local args; args=$(jq -n -c '$ARGS.positional' --args -- "$@")
  jq ".process.terminal = false | .root.readonly = false | .process.args = $args | $JQ_EXTRA" "$dir/config.json" > "$dir/c.json"
  mv "$dir/c.json" "$dir/config.json"
}

echo "== hull check"
"$HULL" check || true
echo
echo "== a container in its own VM"
# shellcheck disable=SC2016 # uname runs in the guest
JQ_EXTRA=. bundle "$work/hello" sh -c 'echo "guest kernel: $(uname -r)"'
echo "host kernel:  $(uname -r)"
"$HULL" --root "$root" run --bundle "$work/hello" hello </dev/null

echo
echo "== a web server in a VM, answering the host"
ip netns add "$ns"
ip link add "hd$$" type veth peer name eth0 netns "$ns"
ip addr add 10.231.0.1/24 dev "hd$$"; ip link set "hd$$" up
ip -n "$ns" addr add 10.231.0.2/24 dev eth0; ip -n "$ns" link set eth0 up
ip -n "$ns" route add default via 10.231.0.1
JQ_EXTRA="(.linux.namespaces[] | select(.type == \"network\")).path = \"/var/run/netns/$ns\"" \
  bundle "$work/web" httpd -f -p 80 -h /www
echo "hello from inside the VM" > "$work/web/rootfs/www/index.html"
"$HULL" --root "$root" run --detach --bundle "$work/web" web </dev/null >/dev/null 2>&1
"$HULL" --root "$root" list
echo "QEMU processes of this demo: $(pgrep -fc -- "qemu-system.*$root")"
echo "$ curl http://10.231.0.2/"
curl -fs --retry 10 --retry-all-errors --retry-delay 1 http://10.231.0.2/
echo "$ hull exec web uname -r"
"$HULL" --root "$root" exec web uname -r
