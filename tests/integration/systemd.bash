# A systemd to drive hull's systemd cgroup driver against: this host has no
# systemd as PID 1, so systemd.bats boots one in a container. The tree is
# Debian 12 with systemd, dbus, QEMU and conmon (scripts/systemd-rootfs.sh,
# cached), booted by systemd-nspawn over a volatile overlay, with the
# repo's build directory bound read-only and the suite's directory $SD
# read-write at the same paths inside. hull runs inside (sd), so the scopes
# it asks for are made by that systemd and hold QEMU.
#
# The container's processes share the host's PID numbers through its PID
# namespace's parent; its mounts are its own (sd_mounts).

# sd CMD...: runs CMD in the container's namespaces.
sd() { nsenter -t "$SD_LEADER" -a "$@"; }

# sd_enter_cgroups NAME: moves the calling shell into a new cgroup NAME
# below its own in every hierarchy, and lists them in $SD/cgdirs. The
# container is rooted there (its cgroup namespace), so its systemd builds
# its tree below, not in the host's, and sd_stop can remove all of it.
sd_enter_cgroups() {
  local h base cur line
  if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then # unified: one tree
    cur=$(sed -n 's/^0:://p' /proc/self/cgroup)
    line=/sys/fs/cgroup${cur%/}/$1
    mkdir -p "$line"
    echo "$line" >> "$SD/cgdirs"
    echo "$BASHPID" > "$line/cgroup.procs"
    return
  fi
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}; base=${h##*/}
    [ -L "$h" ] || [ ! -f "$h/cgroup.procs" ] && continue
    cur=
    while IFS=: read -r _ ctrls path; do
      if { [ "$base" = unified ] && [ -z "$ctrls" ]; } || [ "$ctrls" = "$base" ] || [ "$ctrls" = "name=$base" ]; then
        cur=$path
      fi
    done < /proc/self/cgroup
    line=$h${cur%/}/$1
    mkdir -p "$line"
    echo "$line" >> "$SD/cgdirs"
    if [ "$base" = cpuset ]; then
      cat "$h${cur%/}/cpuset.cpus" > "$line/cpuset.cpus"
      cat "$h${cur%/}/cpuset.mems" > "$line/cpuset.mems"
    fi
    echo "$BASHPID" > "$line/cgroup.procs"
  done
}

# SD_BINDS are host paths the container gets read-only at the same place:
# containerd 1.6 (its shim and ctr), crictl and the CNI plugins, which link
# only the C library the tree shares with the host.
CRICTL=${CRICTL:-$(command -v crictl || echo /root/go/bin/crictl)}
SD_BINDS=(/usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr /usr/lib/cni "$CRICTL")

# sd_boot: boots the container and waits for its systemd to be up. It has
# a network namespace of its own: the pods' bridges and taps stay in it. The
# controllers' hierarchies, which nspawn mounts read-only on cgroup v1, are
# made writable before systemd starts, as they are for a host's systemd:
# the scopes' limits then reach the kernel.
sd_boot() {
  local rootfs
  rootfs=$(bash "$REPO/scripts/systemd-rootfs.sh")
  : > "$SD/cgdirs"
  (
    sd_enter_cgroups "hull-sd.$BASHPID"
    # shellcheck disable=SC2016 # the container's shell expands $d
    exec systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay -D "$rootfs" \
      --machine="hull-sd-$BASHPID" --private-network --bind-ro="$BUILD" --bind="$SD" "${SD_BINDS[@]/#/--bind-ro=}" \
      /bin/sh -c 'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done; exec /lib/systemd/systemd'
  ) > "$SD/nspawn.log" 2>&1 < /dev/null 3>&- &
  SD_NSPAWN=$!
  export SD_NSPAWN
  local _ state
  for _ in $(seq 1 600); do
    SD_LEADER=$(pgrep -P "$SD_NSPAWN" | head -n1) || true
    if [ -n "$SD_LEADER" ]; then
      state=$(nsenter -t "$SD_LEADER" -a systemctl is-system-running 2>/dev/null) || true
      case $state in running | degraded) export SD_LEADER; return 0 ;; esac
    fi
    kill -0 "$SD_NSPAWN" 2>/dev/null || break
    sleep 0.1
  done
  echo "the container's systemd never came up (state '$state'); nspawn says:" >&2
  cat "$SD/nspawn.log" >&2
  return 1
}

# sd_stop: powers the container off (SIGKILL after 30 s) and removes its
# cgroups, deepest first.
sd_stop() {
  if [ -n "${SD_NSPAWN:-}" ]; then
    kill -TERM "$SD_NSPAWN" 2>/dev/null || true
    local _
    for _ in $(seq 1 300); do kill -0 "$SD_NSPAWN" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SD_NSPAWN" 2>/dev/null; then
      echo "the container did not power off in 30 s: killed" >&2
      kill -KILL "$SD_NSPAWN" 2>/dev/null || true
      sleep 1
    fi
  fi
  local d
  if [ -f "$SD/cgdirs" ]; then
    while read -r d; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done < "$SD/cgdirs"
    while read -r d; do
      [ ! -d "$d" ] || { echo "cgroup $d left behind" >&2; return 1; }
    done < "$SD/cgdirs"
  fi
}

# sd_mounts PATTERN: the container's mounts whose line holds PATTERN.
sd_mounts() { sd cat /proc/self/mountinfo | grep -F -- "$1" || true; }
