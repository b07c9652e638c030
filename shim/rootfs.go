package shim

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/containerd/api/types"
	"golang.org/x/sys/unix"
)

// mountFlags are the mount options that are flags; any other option is
// passed to the file system as data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"noatime": {false, unix.MS_NOATIME}, "relatime": {false, unix.MS_RELATIME},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"defaults": {false, 0},
}

// parseMountOptions splits options into mount flags and file system data.
func parseMountOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		f, ok := mountFlags[o]
		switch {
		case !ok:
			data = append(data, o)
		case f.clear:
			flags &^= f.flag
		default:
			flags |= f.flag
		}
	}
	return flags, strings.Join(data, ",")
}

// mountRootfs mounts the snapshot containerd prepared (a bind of a native
// snapshot, an overlay, ...) on the bundle's rootfs, as runc's shim does; the
// share then hands that directory to the guest. No mounts means the bundle's
// rootfs is ready as it is.
func mountRootfs(mounts []*types.Mount, target string) (mounted bool, err error) {
	if len(mounts) == 0 {
		return false, nil
	}
	if len(mounts) > 1 {
		return false, fmt.Errorf("rootfs: %d mounts, hull mounts one", len(mounts))
	}
	m := mounts[0]
	if err := os.MkdirAll(target, 0o711); err != nil {
		return false, fmt.Errorf("rootfs: %w", err)
	}
	flags, data := parseMountOptions(m.Options)
	if err := unix.Mount(m.Source, target, m.Type, flags&^unix.MS_RDONLY, data); err != nil {
		return false, fmt.Errorf("mount rootfs %s (%s) on %s: %w", m.Source, m.Type, target, err)
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		// A bind takes ro only on a remount.
		if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return false, fmt.Errorf("mount rootfs %s read-only: %w", target, err)
		}
	}
	return true, nil
}

// unmountRootfs undoes mountRootfs; the mount may be busy in the share's
// bind still being torn down, so it is detached.
func unmountRootfs(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	return nil
}
