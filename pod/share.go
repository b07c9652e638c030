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
// (and the submounts of those, see Tree) under mounts/; QEMU exports
// shared/, a read-only bind of mounts/ that receives those mounts by
// propagation, each keeping its own rw/ro flag. The guest can write a
// rootfs or volume but cannot create host files beside them.
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

// AddRootfs places a container's rootfs in the share with its submounts,
// as runc binds it, and read-write: root.readonly is the guest runtime's to
// apply, after it has made the mount points the spec needs.
func (s *Share) AddRootfs(cid, rootfs string) (Tree, error) {
	t, err := s.place(cid, "rootfs", rootfs, BindMode{Recursive: true})
	if err != nil {
		return Tree{}, fmt.Errorf("share rootfs of %s: %w", cid, err)
	}
	return t, nil
}

// AddVolume places a host path (a bind mount of the spec) in the share.
func (s *Share) AddVolume(cid, src, dst string, mode BindMode) (Tree, error) {
	sum := sha256.Sum256([]byte(dst))
	name := filepath.Join("volumes", hex.EncodeToString(sum[:8])+"-"+sanitize(filepath.Base(dst)))
	t, err := s.place(cid, name, src, mode)
	if err != nil {
		return Tree{}, fmt.Errorf("share volume %s: %w", dst, err)
	}
	return t, nil
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

// RemoveContainer unmounts and removes everything a container put in the
// share. It never deletes recursively: a mount it failed to remove stays,
// and with it the error, rather than the host files behind it.
func (s *Share) RemoveContainer(cid string) error {
	dir := filepath.Join(s.MountsDir(), cid)
	var errs []error
	vols, subs := filepath.Join(dir, "volumes"), filepath.Join(dir, submountsDir)
	for _, d := range []string{vols, subs} {
		if entries, err := os.ReadDir(d); err == nil {
			for _, e := range entries {
				errs = append(errs, removeMountPoint(filepath.Join(d, e.Name())))
			}
		}
	}
	errs = append(errs, removeMountPoint(filepath.Join(dir, "rootfs")))
	for _, d := range []string{vols, subs, dir} {
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
