#!/usr/bin/env bats
# Docker end to end: a private dockerd (Debian's docker.io) with hull
# registered as a runtime; images come from `docker import`, no registry.

bats_require_minimum_version 1.5.0 # for run -N

load helpers

DOCKER=/usr/bin/docker

setup_file() {
  require_host
  [ -x /usr/sbin/dockerd ] || { echo "dockerd missing (apt-get install docker.io)" >&2; return 1; }
  D=$(mktemp -d /tmp/hull-docker.XXXXXX)
  export D
  write_config "$D/hull.toml"
  cat > "$D/daemon.json" <<JSON
{"runtimes": {"hull": {"path": "$HULL_BIN", "runtimeArgs": ["--config", "$HULL_CONFIG"]}}}
JSON
  /usr/sbin/dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/docker.pid" \
    -H "unix://$D/docker.sock" --config-file "$D/daemon.json" --storage-driver vfs \
    >"$D/dockerd.log" 2>&1 &
  echo $! > "$D/dockerd.pid"
  export DOCKER_HOST=unix://$D/docker.sock
  for _ in $(seq 1 100); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.2; done
  $DOCKER info >/dev/null
  # A busybox-static image with a web page, made without a registry.
  local rootfs=$D/img
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  echo "hello from the VM" > "$rootfs/www/index.html"
  tar -C "$rootfs" -c . | $DOCKER import -c 'ENV PATH=/bin' - hull-busybox >/dev/null
}

teardown_file() {
  [ -n "${D:-}" ] || return 0
  $DOCKER ps -aq 2>/dev/null | xargs -r $DOCKER rm -f >/dev/null 2>&1 || true
  stop_daemon "$D/dockerd.pid" 20
  remove_template "$D/hull.toml"
  # dockerd's own containerd and shims are gone with it; anything of ours left?
  kill_and_unmount "$D"
  rm -rf "$D"
}

d() { $DOCKER "$@"; }

qemus() { pgrep -fc -- "qemu-system.*$D" || true; }

# no_leaks: no QEMU, monitor, proxy, share mount, netns or state of hull.
no_leaks() {
  [ "$(qemus)" = 0 ] || { echo "QEMU left: $(pgrep -fa qemu-system)" >&2; return 1; }
  # A monitor or proxy names $D in its --root, before the hidden command.
  if pgrep -fa -- "$D/.*__(monitor|proxy) " >&2; then echo "hull processes left" >&2; return 1; fi
  if grep -F -- "$D/exec/runtime-hull" /proc/self/mountinfo >&2; then echo "mounts left" >&2; return 1; fi
  local st=$D/exec/runtime-hull/moby
  [ -z "$(ls -A "$st/containers" 2>/dev/null)" ] || { echo "state left: $(ls "$st/containers")" >&2; return 1; }
  [ -z "$(ls -A "$st/sandboxes" 2>/dev/null)" ] || { echo "sandboxes left" >&2; return 1; }
  [ -z "$(ls -A "$st/netns" 2>/dev/null)" ] || { echo "netns left" >&2; return 1; }
}

@test "docker run --rm: the guest kernel, not the host's" {
  run d run --rm --runtime hull hull-busybox uname -r
  echo "$output"
  [ "$status" -eq 0 ]
  [ -n "$output" ]
  [ "$output" != "$(uname -r)" ]
  no_leaks
}

@test "docker run -p 8080:80: HTTP answered from inside the VM, on localhost and on the container IP" {
  d run -d --name web -p 8080:80 --runtime hull hull-busybox \
    sh -c 'trap "echo got-term; exit 0" TERM; httpd -f -p 80 -h /www & wait'
  [ "$(qemus)" = 1 ]
  run curl -fs --retry 30 --retry-all-errors --retry-delay 1 http://localhost:8080/
  [ "$status" -eq 0 ]
  [ "$output" = "hello from the VM" ]
  ip=$(d inspect -f '{{.NetworkSettings.IPAddress}}' web)
  run curl -fsS -m 10 "http://$ip/"
  [ "$output" = "hello from the VM" ]
  run d exec web cat /proc/version
  [ "$status" -eq 0 ]
  [[ "$output" == *"Linux version"* ]]
  [[ "$output" != *"$(uname -r)"* ]]
  start=$(date +%s)
  d stop web
  [ $(( $(date +%s) - start )) -lt 10 ]
  run d logs web
  [[ "$output" == *got-term* ]]
  d rm web
  no_leaks
}

@test "two hull containers on the default bridge reach each other; one QEMU each" {
  d run -d --name peer-a --runtime hull hull-busybox httpd -f -p 80 -h /www
  d run -d --name peer-b --runtime hull hull-busybox sleep 600
  [ "$(qemus)" = 2 ]
  # Under HULL_TEMPLATE (with one NIC) both VMs are clones.
  [ -z "${HULL_TEMPLATE:-}" ] || [ "$(template_clones "$D")" = 2 ]
  ipa=$(d inspect -f '{{.NetworkSettings.IPAddress}}' peer-a)
  ok=
  for _ in $(seq 1 20); do
    out=$(d exec peer-b wget -qO- "http://$ipa/" 2>&1) && { ok=1; break; }
    sleep 0.5
  done
  [ -n "$ok" ]
  [ "$out" = "hello from the VM" ]
  d rm -f peer-a peer-b
  no_leaks
}

@test "exit codes, a tty, and signals pass through" {
  run d run --rm --runtime hull hull-busybox sh -c 'exit 7'
  [ "$status" -eq 7 ]
  run d run --rm -t --runtime hull hull-busybox tty
  [ "$status" -eq 0 ]
  [[ "$output" == /dev/pts/* ]]
  d run -d --name sig --runtime hull hull-busybox sh -c 'trap "echo got-usr1" USR1; while :; do sleep 0.2; done'
  sleep 1
  d kill -s USR1 sig
  for _ in $(seq 1 50); do d logs sig | grep -q got-usr1 && break; sleep 0.2; done
  d logs sig | grep -q got-usr1
  d rm -f sig
  no_leaks
}

@test "docker run --memory 300m --cpus 2 sizes the VM; its cgroup holds QEMU" {
  id=$(d run -d --name sized --memory 300m --cpus 2 --runtime hull hull-busybox sleep 600)
  run d exec sized sh -c 'nproc; grep MemTotal /proc/meminfo'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = 2 ]
  mem_kb=$(echo "${lines[1]}" | awk '{print $2}')
  # 300 MiB plus the guest overhead (128 MiB), less what the kernel keeps.
  [ "$mem_kb" -gt $(( 300 * 1024 )) ]
  [ "$mem_kb" -lt $(( 450 * 1024 )) ]
  # Host accounting sees the sandbox: QEMU runs in the container's cgroup,
  # limited to the VM's size.
  cg=/sys/fs/cgroup/memory/docker/$id
  qemu=$(pgrep -f -- "qemu-system.*$D")
  grep -qx "$qemu" "$cg/cgroup.procs"
  [ "$(cat "$cg/memory.limit_in_bytes")" -ge $(( 300 << 20 )) ]
  # QEMU may open only its own devices on the host.
  dev=/sys/fs/cgroup/devices/docker/$id
  grep -qx "$qemu" "$dev/cgroup.procs"
  [ "$(sort "$dev/devices.list" | tr '\n' ' ')" = "c 10:200 rwm c 10:232 rwm c 10:238 rwm c 10:241 rwm c 1:3 rwm c 1:5 rwm c 1:7 rwm c 1:8 rwm c 1:9 rwm " ]
  d rm -f sized
  [ ! -d "$cg" ]
  [ ! -d "$dev" ]
  no_leaks
}

@test "docker rm -f of a running container leaves nothing; dockerd logged no hull error" {
  d run -d --name gone --runtime hull hull-busybox sleep 600
  d rm -f gone
  no_leaks
  # shellcheck disable=SC2016 # $1 is the inner shell's
  run -1 bash -c 'grep -i "level=error" "$1" | grep -i hull' _ "$D/dockerd.log"
}

@test "--net=host is refused with a clear error" {
  run d run --rm --net=host --runtime hull hull-busybox true
  [ "$status" -ne 0 ]
  [[ "$output" == *"host networking"* ]]
  no_leaks
}
