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
			out = append(out, mountPropagation{dest: m.Destination, source: m.Source, flags: flags,
				attrs: mountAttrs(m.Options, attrOptions), recAttrs: mountAttrs(m.Options, recAttrOptions)})
		}
	}
	return out
}

type mountPropagation struct {
	dest, source string
	flags        uintptr
	// attrs are the MOUNT_ATTR_* flags the options ask for on the top
	// mount, recAttrs those they ask for on every mount of the tree, which
	// a fresh bind must carry as crun's did.
	attrs, recAttrs uint64
}

// attrOptions are the mount options a fresh bind keeps on its top mount
// (runc and crun remount the top mount alone), recAttrOptions those it
// keeps on every mount of its tree.
var (
	attrOptions = map[string]uint64{
		"ro": unix.MOUNT_ATTR_RDONLY, "nosuid": unix.MOUNT_ATTR_NOSUID,
		"nodev": unix.MOUNT_ATTR_NODEV, "noexec": unix.MOUNT_ATTR_NOEXEC,
	}
	recAttrOptions = map[string]uint64{
		"rro": unix.MOUNT_ATTR_RDONLY, "rnosuid": unix.MOUNT_ATTR_NOSUID,
		"rnodev": unix.MOUNT_ATTR_NODEV, "rnoexec": unix.MOUNT_ATTR_NOEXEC,
	}
)

func mountAttrs(opts []string, known map[string]uint64) uint64 {
	var a uint64
	for _, o := range opts {
		a |= known[o]
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
	// The fresh binds of the sources are taken in the agent's namespace,
	// before leaving it.
	trees := make([]int, len(want))
	for i := range trees {
		trees[i] = -1
	}
	defer func() {
		for _, fd := range trees {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	for i, w := range want {
		if !w.peered() {
			continue
		}
		var err error
		if trees[i], err = bindTree(w); err != nil {
			return err
		}
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(nsFd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("enter mount namespace: %w", err)
	}
	for i, w := range want {
		if err := propagate(rootFd, w, trees[i]); err != nil {
			return fmt.Errorf("mount %s: %w", w.dest, err)
		}
	}
	return nil
}

// propagate gives the mount at w.dest the propagation w asks for, placing
// tree (a fresh bind) there when w is peered. The mount point is looked up
// inside the container's root only now, after the mounts before it in the
// spec were replaced: a bind below one of them (a submount placed on its
// own) then lands on the fresh one, not under it.
func propagate(rootFd int, w mountPropagation, tree int) error {
	dest, err := unix.Openat2(rootFd, w.dest, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return err
	}
	defer unix.Close(dest)
	if w.peered() {
		if err := unix.MoveMount(tree, "", dest, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		return nil
	}
	if err := unix.MountSetattr(dest, "", unix.AT_EMPTY_PATH|recursive(w.flags), &unix.MountAttr{Propagation: uint64(w.flags &^ unix.MS_REC)}); err != nil {
		return fmt.Errorf("set propagation: %w", err)
	}
	return nil
}

// bindTree returns a detached bind of a mount's source, in the share's
// peer group, with the propagation and the flags the mount asks for: the
// top's on the top mount, the recursive ones on all.
func bindTree(w mountPropagation) (int, error) {
	rec := recursive(w.flags)
	fd, err := unix.OpenTree(unix.AT_FDCWD, w.source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|rec)
	if err != nil {
		return -1, fmt.Errorf("mount %s: bind %s: %w", w.dest, w.source, err)
	}
	steps := []struct {
		flags uint
		attr  unix.MountAttr
	}{
		{rec, unix.MountAttr{Propagation: uint64(w.flags &^ unix.MS_REC)}},
		{unix.AT_RECURSIVE, unix.MountAttr{Attr_set: w.recAttrs}},
		{0, unix.MountAttr{Attr_set: w.attrs}},
	}
	for _, st := range steps {
		if st.attr == (unix.MountAttr{}) {
			continue
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|st.flags, &st.attr); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("mount %s: set mount attributes: %w", w.dest, err)
		}
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
