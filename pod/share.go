package pod

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Share is a sandbox's share directory, laid out as Kata's after
// CVE-2020-2023/2026: hull bind-mounts each container's rootfs and volumes
// under mounts/; QEMU exports shared/, a read-only bind of mounts/ that
// receives those mounts by propagation, each keeping its own rw/ro flag. The
// guest can write a rootfs or volume but cannot create host files beside
// them.
type Share struct {
	dir string
}

// NewShare names the share under dir; nothing is created until Setup.
func NewShare(dir string) *Share { return &Share{dir: dir} }

// MountsDir is where hull places mounts.
func (s *Share) MountsDir() string { return filepath.Join(s.dir, "mounts") }

// ExportDir is what QEMU exports.
func (s *Share) ExportDir() string { return filepath.Join(s.dir, "shared") }

// Setup creates and mounts the two directories. On error nothing is left.
func (s *Share) Setup() (err error) {
	mounts, shared := s.MountsDir(), s.ExportDir()
	// Traversable (not listable) by others: the guest checks a path's
	// modes, and a container with a user namespace reaches its rootfs as
	// an unprivileged uid. On the host, the state root (0700) guards it.
	for _, d := range []string{mounts, shared} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("share setup: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil { // whatever the umask
			return fmt.Errorf("share setup: %w", err)
		}
	}
	defer func() {
		if err != nil {
			s.Teardown()
		}
	}()
	steps := []struct {
		src, dst string
		flags    uintptr
	}{
		{mounts, mounts, unix.MS_BIND},
		{"", mounts, unix.MS_SHARED},
		{mounts, shared, unix.MS_BIND},
		{"", shared, unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV},
		{"", shared, unix.MS_SLAVE},
	}
	for _, st := range steps {
		if err := unix.Mount(st.src, st.dst, "", st.flags, ""); err != nil {
			return fmt.Errorf("share setup: mount %s (flags %#x): %w", st.dst, st.flags, err)
		}
	}
	return nil
}

// AddRootfs binds a container's rootfs into the share and returns its path
// relative to the export.
func (s *Share) AddRootfs(cid, rootfs string, readonly bool) (string, error) {
	rel := filepath.Join(cid, "rootfs")
	if err := s.bind(rootfs, rel, readonly, true); err != nil {
		return "", fmt.Errorf("share rootfs of %s: %w", cid, err)
	}
	return rel, nil
}

// AddVolume binds a host path (a bind mount of the spec) into the share and
// returns its path relative to the export.
func (s *Share) AddVolume(cid, src, dst string, readonly bool) (string, error) {
	sum := sha256.Sum256([]byte(dst))
	rel := filepath.Join(cid, "volumes", hex.EncodeToString(sum[:8])+"-"+sanitize(filepath.Base(dst)))
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("share volume %s: %w", dst, err)
	}
	if err := s.bind(src, rel, readonly, fi.IsDir()); err != nil {
		return "", fmt.Errorf("share volume %s: %w", dst, err)
	}
	return rel, nil
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == ' ' {
			return '_'
		}
		return r
	}, s)
	if s == "." || s == ".." || s == "" {
		return "_"
	}
	return s
}

func (s *Share) bind(src, rel string, readonly, dir bool) error {
	target := filepath.Join(s.MountsDir(), rel)
	if dir {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	// A detached copy of src's tree, made private (mounts made later
	// inside src do not follow) and, when asked, read-only, before it is
	// attached: propagation copies it into the export, QEMU's and
	// virtiofsd's, flags and all. Remounting read-only after attaching
	// would reach hull's own copy only, and the guest would write through
	// the export.
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if readonly {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("bind %s: set mount attributes: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// RemoveContainer unmounts and removes everything a container put in the
// share. It never deletes recursively: a mount it failed to remove stays,
// and with it the error, rather than the host files behind it.
func (s *Share) RemoveContainer(cid string) error {
	dir := filepath.Join(s.MountsDir(), cid)
	var errs []error
	vols := filepath.Join(dir, "volumes")
	if entries, err := os.ReadDir(vols); err == nil {
		for _, e := range entries {
			errs = append(errs, removeMountPoint(filepath.Join(vols, e.Name())))
		}
	}
	errs = append(errs, removeMountPoint(filepath.Join(dir, "rootfs")))
	for _, d := range []string{vols, dir} {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("share cleanup of %s: %w", cid, err)
	}
	return nil
}

// Teardown unmounts everything under the share and removes it.
func (s *Share) Teardown() error {
	var errs []error
	if entries, err := os.ReadDir(s.MountsDir()); err == nil {
		for _, e := range entries {
			errs = append(errs, s.RemoveContainer(e.Name()))
		}
	}
	for _, d := range []string{s.ExportDir(), s.MountsDir()} {
		errs = append(errs, removeMountPoint(d))
	}
	if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("share teardown %s: %w", s.dir, err)
	}
	return nil
}

// removeMountPoint unmounts path and removes the then empty directory or
// file.
func removeMountPoint(path string) error {
	if err := unmountAll(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// unmountAll lazily unmounts path until nothing is mounted there.
func unmountAll(path string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return nil
}
