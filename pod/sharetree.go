package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/mountinfo"
)

// BindMode is how a bind mount's source is placed in the share: what runc
// does to the source, done on the host, so that the guest cannot undo it.
type BindMode struct {
	// Recursive brings the source's submounts along ("rbind"); without it
	// the guest sees the source's own file system alone ("bind").
	Recursive bool
	// ReadOnly makes the top mount read-only ("ro"): submounts keep their
	// own flag, as runc's remount leaves them.
	ReadOnly bool
	// RecursiveReadOnly makes every mount read-only ("rro").
	RecursiveReadOnly bool
}

// Tree is a host path placed in the share.
type Tree struct {
	// Rel is its path relative to the export.
	Rel string
	// Submounts are the host mounts below it that a recursive bind brings
	// along, parents first.
	Submounts []Submount
}

// Submount is a host mount below a tree, placed in the share a second time,
// on its own. In the guest it would not be a mount of its own inside the
// tree: 9p shows the tree as one file system, and a virtio-fs submount
// takes the flags of the mount it is first reached through (a container's
// read-only one). So the guest spec mounts it over the tree, where it was.
type Submount struct {
	// Path is where it is mounted, relative to the tree's root.
	Path string
	// Rel is its own path relative to the export.
	Rel string
}

// submountsDir holds a container's submounts in the share.
const submountsDir = "submounts"

// place copies src's mount tree into the share at cid/name.
//
// Every mount below src is copied, whatever the mode: a directory or file
// that is a mount point on the host can be removed (and the host's mount
// with it, lazily, Linux >= 3.18) from any mount namespace where it is not
// one, such as virtiofsd's, so a copy without them would let the guest
// unmount the host's mounts under a volume. A non-recursive bind covers
// them instead (topOnly).
func (s *Share) place(cid, name, src string, mode BindMode) (Tree, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return Tree{}, err
	}
	rel := filepath.Join(cid, name)
	target := filepath.Join(s.MountsDir(), rel)
	if err := makeMountPoint(target, fi.IsDir()); err != nil {
		return Tree{}, err
	}
	var tree int
	if mode.Recursive || !fi.IsDir() {
		tree, err = unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	} else {
		tree, err = topOnly(src, target, mode.ReadOnly || mode.RecursiveReadOnly)
	}
	if err != nil {
		return Tree{}, fmt.Errorf("bind %s: %w", src, err)
	}
	defer unix.Close(tree)
	// Private (mounts made later inside src do not follow) and read-only
	// as asked, before it is attached: propagation copies it into the
	// export, QEMU's and virtiofsd's, flags and all. Remounting read-only
	// after attaching would reach hull's own copy only, and the guest would
	// write through the export.
	if err := setAttr(tree, unix.AT_RECURSIVE, unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		return Tree{}, fmt.Errorf("bind %s: make private: %w", src, err)
	}
	if mode.ReadOnly || mode.RecursiveReadOnly {
		var which uint // the top mount alone
		if mode.RecursiveReadOnly {
			which = unix.AT_RECURSIVE
		}
		if err := setAttr(tree, which, unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return Tree{}, fmt.Errorf("bind %s: make read-only: %w", src, err)
		}
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return Tree{}, fmt.Errorf("bind %s: %w", src, err)
	}
	t := Tree{Rel: rel}
	if !mode.Recursive || !fi.IsDir() {
		return t, nil
	}
	root, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Tree{}, err
	}
	defer unix.Close(root)
	subs, err := reachableSubmounts(root, target)
	if err != nil {
		return Tree{}, fmt.Errorf("bind %s: submounts: %w", src, err)
	}
	for i, p := range subs {
		sub := Submount{Path: p, Rel: filepath.Join(cid, submountsDir, fmt.Sprintf("%s.%d", filepath.Base(name), i+1))}
		if err := s.placeSubmount(root, p, sub.Rel); err != nil {
			return Tree{}, fmt.Errorf("bind %s: submount %s: %w", src, p, err)
		}
		t.Submounts = append(t.Submounts, sub)
	}
	return t, nil
}

// placeSubmount copies the one mount at p below root (a tree of the share)
// to rel, with its flags; the mounts below it have a copy of their own.
func (s *Share) placeSubmount(root int, p, rel string) error {
	fd, err := openBeneath(root, p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	target := filepath.Join(s.MountsDir(), rel)
	if err := makeMountPoint(target, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
		return err
	}
	m, err := unix.OpenTree(fd, "", unix.AT_EMPTY_PATH|unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(m)
	return unix.MoveMount(m, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// topOnly returns a detached copy of the directory src's mount tree in
// which each mount made on src's own file system is covered by a bind of
// what it hides there (read-only if readOnly): what a non-recursive bind
// shows, with the mount points still mount points below. It puts the copy
// together on the directory at, in a scratch mount namespace, so that none
// of its steps reaches another.
func topOnly(src, at string, readOnly bool) (int, error) {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return -1, err
	}
	covered, err := ownSubmounts(src)
	if err != nil {
		return -1, err
	}
	if len(covered) == 0 {
		return unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	}
	tree := -1
	err = inScratchNamespace(func() error {
		own, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return err
		}
		defer unix.Close(own)
		all, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return err
		}
		err = unix.MoveMount(all, "", unix.AT_FDCWD, at, unix.MOVE_MOUNT_F_EMPTY_PATH)
		unix.Close(all)
		if err != nil {
			return err
		}
		copied, err := unix.Open(at, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(copied)
		for _, p := range covered {
			if err := cover(own, copied, p, readOnly); err != nil {
				return fmt.Errorf("cover %s: %w", p, err)
			}
		}
		tree, err = unix.OpenTree(copied, "", unix.AT_EMPTY_PATH|unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		return err
	})
	if err != nil {
		if tree >= 0 {
			unix.Close(tree)
		}
		return -1, err
	}
	return tree, nil
}

// cover mounts, at p below copied (a copy of src's tree), a bind of p below
// own (a copy of src's own mount): the directory or file that the mount at
// p hides.
func cover(own, copied int, p string, readOnly bool) error {
	hidden, err := openBeneath(own, p)
	if err != nil {
		return err
	}
	defer unix.Close(hidden)
	m, err := unix.OpenTree(hidden, "", unix.AT_EMPTY_PATH|unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(m)
	if readOnly {
		if err := setAttr(m, 0, unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return err
		}
	}
	point, err := openBeneath(copied, p)
	if err != nil {
		return err
	}
	defer unix.Close(point)
	return unix.MoveMount(m, "", point, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// openBeneath opens p below the directory dir, following mounts but no
// symlink and never leaving dir. A guest can change a tree while hull reads
// it (through another container's bind of the same source): a symlink
// planted on the way would lead to any host path.
func openBeneath(dir int, p string) (int, error) {
	return unix.Openat2(dir, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
}

// inScratchNamespace runs f on a thread of its own in a private copy of the
// caller's mount namespace. The thread is never given back: it ends with
// f's goroutine, and the namespace with it. A detached tree f opens stays
// usable by the caller.
func inScratchNamespace(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("scratch mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("scratch mount namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func setAttr(tree int, flags uint, attr unix.MountAttr) error {
	return unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|flags, &attr)
}

// makeMountPoint creates an empty directory or file at path.
func makeMountPoint(path string, dir bool) error {
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// reachableSubmounts lists the mounts below dir (open as root) that a
// lookup of their path reaches, relative to dir, parents before children. A
// mount hidden by another stacked on it, or on a directory above it, is
// left out: a bind of its path would bind what hides it. So is one whose
// path now holds a symlink.
func reachableSubmounts(root int, dir string) ([]string, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var subs []string
	for _, m := range mountsUnder(mounts, dir) {
		fd, err := openBeneath(root, m.Point)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			continue
		}
		if err != nil {
			return nil, err
		}
		id, err := mountID(fd, "")
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		if id == m.ID {
			subs = append(subs, m.Point)
		}
	}
	return subs, nil
}

// ownSubmounts lists the mount points below dir that lie on dir's own
// mount, relative to dir, shallowest first.
func ownSubmounts(dir string) ([]string, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	id, err := mountID(unix.AT_FDCWD, dir)
	if err != nil {
		return nil, err
	}
	var own []string
	for _, m := range mountsUnder(mounts, dir) {
		if m.Parent == id {
			own = append(own, m.Point)
		}
	}
	return own, nil
}

// mountID is the ID of the mount that path (below dir; dir itself if
// empty) is on.
func mountID(dir int, path string) (uint64, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT
	if path == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var st unix.Statx_t
	if err := unix.Statx(dir, path, flags, unix.STATX_MNT_ID, &st); err != nil {
		return 0, err
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("statx: no mount ID (Linux < 5.8)")
	}
	return st.Mnt_id, nil
}

// mountsUnder returns the mounts strictly below dir, their points made
// relative to it, shallowest first (so parents come before children) and
// otherwise in the kernel's order.
func mountsUnder(mounts []mountinfo.Mount, dir string) []mountinfo.Mount {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var under []mountinfo.Mount
	for _, m := range mounts {
		if rel, ok := strings.CutPrefix(m.Point, prefix); ok && rel != "" {
			m.Point = rel
			under = append(under, m)
		}
	}
	sort.SliceStable(under, func(i, j int) bool {
		return strings.Count(under[i].Point, "/") < strings.Count(under[j].Point, "/")
	})
	return under
}
