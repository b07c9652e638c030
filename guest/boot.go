// Package guest is hull-agent, PID 1 of the sandbox VM: it prepares the
// guest's file systems, serves the agent protocol to the host, and runs the
// containers with runc.
package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BootConfig is what the host tells the agent on the kernel command line
// (hull.port=, hull.vsock=, hull.share=, hull.sharefs=, hull.debug,
// hull.template).
type BootConfig struct {
	PortName  string
	VsockPort uint32
	ShareTag  string
	// ShareFS is the share's file system: ShareFS9P (the default) or
	// ShareFSVirtio.
	ShareFS string
	Debug   bool
	// Template: this guest boots to be saved as a VM template, then
	// restored in clones. It mounts the share only once a clone starts
	// (StartClone), and outlives its host's hangup until then.
	Template bool
}

// File systems the share comes over (hull.sharefs=).
const (
	ShareFS9P     = "9p"
	ShareFSVirtio = "virtiofs"
)

// ShareDir is where the sandbox share is mounted in the guest.
const ShareDir = "/run/hull/shared"

// ParseCmdline reads the hull.* parameters of a kernel command line.
func ParseCmdline(cmdline string) (BootConfig, error) {
	cfg := BootConfig{ShareFS: ShareFS9P}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "hull.port":
			cfg.PortName = v
		case "hull.share":
			cfg.ShareTag = v
		case "hull.sharefs":
			if v != ShareFS9P && v != ShareFSVirtio {
				return cfg, fmt.Errorf("hull.sharefs=%q: want %s or %s", v, ShareFS9P, ShareFSVirtio)
			}
			cfg.ShareFS = v
		case "hull.debug":
			cfg.Debug = v == "" || v == "1"
		case "hull.template":
			cfg.Template = v == "" || v == "1"
		case "hull.vsock":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return cfg, fmt.Errorf("hull.vsock=%q: %w", v, err)
			}
			cfg.VsockPort = uint32(n)
		}
	}
	if cfg.PortName == "" && cfg.VsockPort == 0 {
		return cfg, errors.New("kernel command line names no agent channel (hull.port= or hull.vsock=)")
	}
	return cfg, nil
}

type mountPoint struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// cgroupControllers are the v1 hierarchies runc expects.
var cgroupControllers = []string{"cpu,cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "blkio"}

// MountBase mounts what a Linux userland and runc expect.
func MountBase() error {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	mounts := []mountPoint{
		{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
		{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""},
		{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"tmpfs", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777"},
	}
	if err := mountAll(mounts); err != nil {
		return err
	}
	// What udev would make: runtimes read "-" arguments from /dev/stdin.
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", link, err)
		}
	}
	_ = os.Symlink("pts/ptmx", "/dev/ptmx")
	return nil
}

// MountCgroups mounts the v1 cgroup hierarchies, which only the OCI
// runtime needs (~20 ms under TCG, off the path to the agent serving).
func MountCgroups() error {
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	mounts := []mountPoint{{"tmpfs", "/sys/fs/cgroup", "tmpfs", flags, "mode=0755"}}
	for _, c := range cgroupControllers {
		mounts = append(mounts, mountPoint{"cgroup", "/sys/fs/cgroup/" + c, "cgroup", flags, c})
	}
	if err := mountAll(mounts); err != nil {
		return err
	}
	// cpu and cpuacct share a hierarchy; runc also looks for each by name.
	for _, l := range []string{"cpu", "cpuacct"} {
		_ = os.Symlink("cpu,cpuacct", "/sys/fs/cgroup/"+l)
	}
	return nil
}

func mountAll(mounts []mountPoint) error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// shareWait bounds how long MountShare waits for the share's device to
// appear.
const shareWait = 10 * time.Second

// MountShare mounts the sandbox's share, a 9p or virtio-fs device, at
// ShareDir. A device that a just-loaded module is still probing is not
// there yet (9p: ENOENT, "no channels available"; virtio-fs: EINVAL, tag
// not found); MountShare retries until shareWait.
func MountShare(tag, fs string) error {
	if err := os.MkdirAll(ShareDir, 0o755); err != nil {
		return fmt.Errorf("mount share: %w", err)
	}
	fstype, opts, notYet := "9p", "trans=virtio,version=9p2000.L,cache=mmap,msize=512000", unix.ENOENT
	if fs == ShareFSVirtio {
		fstype, opts, notYet = "virtiofs", "", unix.EINVAL
	}
	deadline := time.Now().Add(shareWait)
	for {
		err := unix.Mount(tag, ShareDir, fstype, unix.MS_NODEV, opts)
		if err == nil {
			// Shared, as a host's mounts are: a container's bind mounts
			// from the share then join a peer group, so the propagation
			// its spec asks for (shared, slave) means what it means there.
			if err := unix.Mount("", ShareDir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("make share %s shared: %w", ShareDir, err)
			}
			if fs == ShareFSVirtio {
				return raiseReadahead(ShareDir, virtiofsReadaheadKiB)
			}
			return nil
		}
		if !errors.Is(err, notYet) || time.Now().After(deadline) {
			return fmt.Errorf("mount %s share %q on %s: %w", fstype, tag, ShareDir, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// virtiofsReadaheadKiB is the share's read-ahead over virtio-fs. Each read
// request is a round trip to virtiofsd; FUSE's default of 128 KiB leaves
// a sequential read mostly waiting on them.
const virtiofsReadaheadKiB = 4096

// raiseReadahead sets the read-ahead of the file system mounted at dir (its
// backing device info; virtio-fs submounts share their parent's).
func raiseReadahead(dir string, kib int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	bdi := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(bdi, []byte(strconv.Itoa(kib)), 0); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	return nil
}

// LoadModules loads, in order, the kernel modules listed one path a line in
// list (written by the initrd recipe in dependency order). A missing list
// means a kernel with everything built in.
func LoadModules(list string) error {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load modules: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		path := strings.TrimSpace(sc.Text())
		if path == "" || strings.HasPrefix(path, "#") {
			continue
		}
		if err := loadModule(filepath.Clean(path)); err != nil {
			return err
		}
	}
	return sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}
