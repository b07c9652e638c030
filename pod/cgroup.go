package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// HostCgroup is the cgroup at a spec's linux.cgroupsPath on the host. As
// with Kata's sandbox_cgroup_only, it holds the sandbox's host processes
// (monitor, QEMU, proxies) so that host accounting sees the sandbox, with
// the spec's limits sized for the whole VM. The container's own limits are
// enforced again inside the guest.
type HostCgroup struct {
	// dirs are the cgroup's directories, one per v1 hierarchy (or the one
	// unified directory).
	dirs    []string
	unified bool
}

// cgroupRoot is where cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Controllers are the hierarchies hull places sandbox processes in.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "cpuset", "pids", "devices"}

// hostDevices are the only devices a sandbox's host processes may open:
// what QEMU opens (the null devices, entropy, KVM, vhost) and the tun
// device the monitor makes taps with. The container's own device rules
// are enforced in the guest.
var hostDevices = []string{
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", // null zero full random urandom
	"c 10:200 rwm", "c 10:232 rwm", "c 10:238 rwm", "c 10:241 rwm", // tun kvm vhost-net vhost-vsock
}

// NewHostCgroup names the cgroup at path (relative to the hierarchies'
// roots, as in the spec); nil when path is empty.
func NewHostCgroup(path string) (*HostCgroup, error) {
	if path == "" {
		return nil, nil
	}
	clean := cgroupfsPath(path)
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &HostCgroup{dirs: []string{filepath.Join(cgroupRoot, clean)}, unified: true}, nil
	}
	cg := &HostCgroup{}
	seen := map[string]bool{}
	for _, c := range v1Controllers {
		root, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, c))
		if err != nil || seen[root] {
			continue // not mounted, or co-mounted with one already listed
		}
		seen[root] = true
		cg.dirs = append(cg.dirs, filepath.Join(root, clean))
	}
	return cg, nil
}

// cgroupfsPath is where a spec's cgroupsPath lives below each hierarchy's
// root, as runc's cgroupfs driver places it: relative and absolute paths
// alike, and a path in systemd form ("test.slice:cri-containerd:ID", which
// containerd writes for a pod whose parent ends in .slice even with the
// cgroupfs driver) as the one directory of that name.
func cgroupfsPath(path string) string { return filepath.Clean("/" + path) }

// Create makes the cgroup and sets limits sized for a VM of vmMemMiB: a
// memory limit in the spec becomes the VM's memory plus QEMU's own
// overhead, never less than what the guest was given.
func (c *HostCgroup) Create(res *specs.LinuxResources, vmMemMiB int) error {
	if c == nil {
		return nil
	}
	for _, d := range c.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
	}
	if err := c.initCpuset(); err != nil {
		return err
	}
	if err := c.limitDevices(); err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	const qemuOverheadMiB = 96
	if res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		limit := strconv.FormatInt(int64(vmMemMiB+qemuOverheadMiB)<<20, 10)
		if err := c.write("memory.limit_in_bytes", "memory.max", limit); err != nil {
			return err
		}
	}
	if res.CPU != nil && res.CPU.Quota != nil && *res.CPU.Quota > 0 && res.CPU.Period != nil {
		if c.unified {
			return c.write("", "cpu.max", fmt.Sprintf("%d %d", *res.CPU.Quota, *res.CPU.Period))
		}
		if err := c.write("cpu.cfs_period_us", "", strconv.FormatUint(*res.CPU.Period, 10)); err != nil {
			return err
		}
		if err := c.write("cpu.cfs_quota_us", "", strconv.FormatInt(*res.CPU.Quota, 10)); err != nil {
			return err
		}
	}
	return c.limitCPU(res.CPU)
}

// limitCPU sets the spec's CPU weight and CPU set (the quota is set above):
// QEMU's threads compete for, and run on, what the pod was given.
func (c *HostCgroup) limitCPU(cpu *specs.LinuxCPU) error {
	if cpu == nil {
		return nil
	}
	if cpu.Shares != nil && *cpu.Shares > 0 {
		if c.unified {
			if err := c.write("", "cpu.weight", strconv.FormatUint(sharesToWeight(*cpu.Shares), 10)); err != nil {
				return err
			}
		} else if err := c.write("cpu.shares", "", strconv.FormatUint(*cpu.Shares, 10)); err != nil {
			return err
		}
	}
	if cpu.Cpus != "" {
		if err := c.write("cpuset.cpus", "cpuset.cpus", cpu.Cpus); err != nil {
			return err
		}
	}
	if cpu.Mems != "" {
		if err := c.write("cpuset.mems", "cpuset.mems", cpu.Mems); err != nil {
			return err
		}
	}
	return nil
}

// sharesToWeight maps cgroup v1 shares [2, 262144] onto v2 weights
// [1, 10000], as runc and crun do.
func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// initCpuset gives each new v1 cpuset directory down to the cgroup its
// parent's CPUs and memory nodes: a v1 cpuset starts empty, and a process
// cannot join an empty one (ENOSPC).
func (c *HostCgroup) initCpuset() error {
	if c.unified {
		return nil
	}
	root, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, "cpuset"))
	if err != nil {
		return nil // no cpuset hierarchy
	}
	for _, d := range c.dirs {
		rel, err := filepath.Rel(root, d)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // another hierarchy's directory
		}
		if err := fillCpuset(root, rel); err != nil {
			return err
		}
	}
	return nil
}

// fillCpuset copies cpuset.cpus and cpuset.mems from parent to child along
// rel below root, where a level has none.
func fillCpuset(root, rel string) error {
	parent := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		dir := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return fmt.Errorf("cgroup %s: %w", dir, err)
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			val, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return fmt.Errorf("cgroup %s: %w", parent, err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), val, 0o644); err != nil {
				return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
			}
		}
		parent = dir
	}
	return nil
}

// limitDevices denies every device but hostDevices (cgroup v1; v2's device
// controller takes a BPF program, which hull does not load).
func (c *HostCgroup) limitDevices() error {
	if c.unified {
		return nil
	}
	if err := c.write("devices.deny", "", "a"); err != nil {
		return err
	}
	for _, rule := range hostDevices {
		if err := c.write("devices.allow", "", rule); err != nil {
			return err
		}
	}
	return nil
}

// write sets a control file: v1's name in the directory that has it, or
// v2's in the unified directory.
func (c *HostCgroup) write(v1, v2, value string) error {
	name := v1
	if c.unified {
		name = v2
	}
	if name == "" {
		return nil
	}
	for _, d := range c.dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("cgroup %s=%s: %w", p, value, err)
		}
	}
	return nil
}

// Add moves a process (and so the children it starts later) into the
// cgroup.
func (c *HostCgroup) Add(pid int) error {
	if c == nil {
		return nil
	}
	for _, d := range c.dirs {
		err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("add %d to cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// Remove deletes the cgroup once its processes are gone (it retries
// briefly while exiting processes leave it).
func (c *HostCgroup) Remove() error {
	if c == nil {
		return nil
	}
	var errs []error
	for _, d := range c.dirs {
		var err error
		for i := 0; i < 50; i++ {
			err = unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// JoinCgroup moves the calling process into the cgroup at path (a spec's
// cgroupsPath); monitors call it first thing, so that QEMU starts inside.
// (The CLI front end puts its proxies in theirs, see ocicli.)
func JoinCgroup(path string) error {
	cg, err := NewHostCgroup(path)
	if err != nil {
		return err
	}
	return cg.Add(os.Getpid())
}
