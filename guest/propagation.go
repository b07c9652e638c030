package guest

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// propagationFlags are the mount options that set a mount's propagation.
var propagationFlags = map[string]uintptr{
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// propagations lists, in spec order, the bind mounts whose options ask for
// a propagation, with the flags each asks for (the last one wins, as in
// mount(8)).
func propagations(s *specs.Spec) []mountPropagation {
	var out []mountPropagation
	for _, m := range s.Mounts {
		if !isBind(m) {
			continue
		}
		var flags uintptr
		for _, o := range m.Options {
			if f, ok := propagationFlags[o]; ok {
				flags = f
			}
		}
		if flags != 0 {
			out = append(out, mountPropagation{dest: m.Destination, source: m.Source, flags: flags, attrs: mountAttrs(m.Options)})
		}
	}
	return out
}

type mountPropagation struct {
	dest, source string
	flags        uintptr
	// attrs are the MOUNT_ATTR_* flags the options ask for, which a fresh
	// bind must carry as crun's did.
	attrs uint64
}

// attrOptions are the mount options a fresh bind keeps.
var attrOptions = map[string]uint64{
	"ro": unix.MOUNT_ATTR_RDONLY, "nosuid": unix.MOUNT_ATTR_NOSUID,
	"nodev": unix.MOUNT_ATTR_NODEV, "noexec": unix.MOUNT_ATTR_NOEXEC,
}

func mountAttrs(opts []string) uint64 {
	var a uint64
	for _, o := range opts {
		a |= attrOptions[o]
	}
	return a
}

// peered: a shared or slave mount must be in a peer group with the guest's
// share (the source), which a mount crun made private no longer is.
func (m mountPropagation) peered() bool { return m.flags&(unix.MS_SHARED|unix.MS_SLAVE) != 0 }

// setPropagation gives a created container's bind mounts the propagation
// their options ask for. crun (1.8) leaves every bind mount it places
// private, so the agent sets it from the container's own mount namespace,
// before the workload starts. A shared or slave mount is replaced by a
// fresh bind of its source, taken in the agent's namespace, where the share
// is shared: the container's mount then is a peer (or a slave) of the
// share, as a runc container's volume is of its host mount.
func setPropagation(pid int, want []mountPropagation) error {
	if len(want) == 0 {
		return nil
	}
	root, err := os.Open("/proc/" + strconv.Itoa(pid) + "/root")
	if err != nil {
		return fmt.Errorf("container root: %w", err)
	}
	defer root.Close()
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		return fmt.Errorf("container mount namespace: %w", err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread enters the container's mount namespace and is never
		// given back: it ends with the goroutine, the rest of the agent
		// stays where it was.
		runtime.LockOSThread()
		errc <- propagateIn(int(root.Fd()), int(ns.Fd()), want)
	}()
	return <-errc
}

// propagateIn runs on a thread of its own, which it moves into the
// container's mount namespace.
func propagateIn(rootFd, nsFd int, want []mountPropagation) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	// Everything is opened before leaving the agent's namespace: each mount
	// point inside the container's root (symlinks resolved there), and the
	// fresh binds of the sources.
	dests := make([]int, len(want))
	trees := make([]int, len(want))
	for i, w := range want {
		fd, err := unix.Openat2(rootFd, w.dest, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return fmt.Errorf("mount %s: %w", w.dest, err)
		}
		fds = append(fds, fd)
		dests[i] = fd
		if !w.peered() {
			continue
		}
		if trees[i], err = bindTree(w); err != nil {
			return err
		}
		fds = append(fds, trees[i])
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(nsFd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("enter mount namespace: %w", err)
	}
	for i, w := range want {
		if w.peered() {
			if err := unix.MoveMount(trees[i], "", dests[i], "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
				return fmt.Errorf("mount %s: attach: %w", w.dest, err)
			}
			continue
		}
		if err := unix.MountSetattr(dests[i], "", unix.AT_EMPTY_PATH|recursive(w.flags), &unix.MountAttr{Propagation: uint64(w.flags &^ unix.MS_REC)}); err != nil {
			return fmt.Errorf("mount %s: set propagation: %w", w.dest, err)
		}
	}
	return nil
}

// bindTree returns a detached bind of a mount's source, in the share's
// peer group, with the propagation and read-only flag the mount asks for.
func bindTree(w mountPropagation) (int, error) {
	rec := recursive(w.flags)
	fd, err := unix.OpenTree(unix.AT_FDCWD, w.source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|rec)
	if err != nil {
		return -1, fmt.Errorf("mount %s: bind %s: %w", w.dest, w.source, err)
	}
	attr := &unix.MountAttr{Propagation: uint64(w.flags &^ unix.MS_REC), Attr_set: w.attrs}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|rec, attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount %s: set propagation: %w", w.dest, err)
	}
	return fd, nil
}

// recursive turns MS_REC into the *at calls' AT_RECURSIVE.
func recursive(flags uintptr) uint {
	if flags&unix.MS_REC != 0 {
		return unix.AT_RECURSIVE
	}
	return 0
}
