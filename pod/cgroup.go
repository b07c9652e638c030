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

// CgroupDriver is what makes a sandbox's host cgroup, as runc's two
// drivers do: hull itself in the cgroup file system, or systemd.
type CgroupDriver string

const (
	// Cgroupfs: hull makes the directories at cgroupsPath below each
	// hierarchy's root and writes the limits into them.
	Cgroupfs CgroupDriver = "cgroupfs"
	// Systemd: systemd makes a transient scope named by cgroupsPath
	// ("slice:prefix:name"), asked over D-Bus, with the limits as the
	// scope's properties (see systemd.go).
	Systemd CgroupDriver = "systemd"
)

// CgroupChoice is the driver a front end uses for its sandboxes' host
// cgroups, and why (`hull check` and the shim's log say it).
type CgroupChoice struct {
	Driver CgroupDriver
	Why    string
}

// CLICgroupDriver is the CLI's choice, runc's: systemd when the caller
// passes --systemd-cgroup (conmon does under CRI-O's cgroup_manager =
// "systemd", containerd's runc shim under SystemdCgroup = true), which
// needs systemd as PID 1; cgroupfs otherwise, a cgroupsPath in systemd
// form included (runc's cgroupfs driver takes it as one directory).
func CLICgroupDriver(systemdCgroup bool) (CgroupChoice, error) {
	return cliCgroupDriver(systemdCgroup, SystemdBooted())
}

func cliCgroupDriver(systemdCgroup, booted bool) (CgroupChoice, error) {
	switch {
	case systemdCgroup && !booted:
		return CgroupChoice{}, errors.New("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system), so it cannot make cgroups; drop the flag and hull makes them itself")
	case systemdCgroup:
		return CgroupChoice{Systemd, "--systemd-cgroup given, and systemd is PID 1"}, nil
	case booted:
		return CgroupChoice{Cgroupfs, "no --systemd-cgroup (systemd is PID 1, but the caller uses cgroupfs)"}, nil
	}
	return CgroupChoice{Cgroupfs, "no --systemd-cgroup (systemd is not PID 1 here)"}, nil
}

// ShimCgroupDriver is the shim's choice for a pod's cgroupsPath, Kata's
// shim's: systemd for a path in systemd form on a host that systemd
// booted, cgroupfs otherwise (such a path is then one directory, as runc
// takes it). containerd writes that form whenever its systemd driver is on
// (and for a pod parent ending in .slice), but sends a runtime that is not
// runc no SystemdCgroup option: its CRI and ctr keep runc's options for
// runc's shim.
func ShimCgroupDriver(cgroupsPath string) CgroupChoice {
	return shimCgroupDriver(cgroupsPath, SystemdBooted())
}

func shimCgroupDriver(cgroupsPath string, booted bool) CgroupChoice {
	switch {
	case !IsSystemdPath(cgroupsPath):
		return CgroupChoice{Cgroupfs, "cgroupsPath not in systemd form"}
	case booted:
		return CgroupChoice{Systemd, "cgroupsPath in systemd form (slice:prefix:name), and systemd is PID 1"}
	}
	return CgroupChoice{Cgroupfs, "cgroupsPath in systemd form, but systemd is not PID 1 here: one directory of that name"}
}

// IsSystemdPath reports whether a cgroupsPath is in systemd's form,
// "slice:prefix:name", as containerd and CRI-O write it for the systemd
// driver (the slice may be empty).
func IsSystemdPath(path string) bool {
	parts := strings.Split(path, ":")
	return len(parts) == 3 && !strings.Contains(path, "/") && (parts[0] == "" || strings.HasSuffix(parts[0], ".slice"))
}

// HostCgroup is the cgroup at a spec's linux.cgroupsPath on the host. As
// with Kata's sandbox_cgroup_only, it holds the sandbox's host processes
// (monitor, QEMU, proxies; or the shim and QEMU) so that host accounting
// sees the sandbox, with the spec's limits sized for the whole VM. The
// container's own limits are enforced again inside the guest.
type HostCgroup struct {
	driver cgroupDriver
}

// cgroupDriver makes one host cgroup, puts processes in it and removes it:
// cgroupfs or systemdScope.
type cgroupDriver interface {
	create(l hostLimits) error
	add(pid int) error
	remove() error
}

// NewHostCgroup names the host cgroup of container id at path (the spec's
// cgroupsPath) as driver makes it ("" is cgroupfs). With cgroupfs an empty
// path is no cgroup at all (nil); with systemd it is the scope runc would
// make, "hull-<id>.scope" in system.slice.
func NewHostCgroup(driver CgroupDriver, path, id string) (*HostCgroup, error) {
	switch driver {
	case Systemd:
		s, err := newSystemdScope(path, id, dialSystemBus)
		if err != nil {
			return nil, err
		}
		return &HostCgroup{driver: s}, nil
	case Cgroupfs, "":
		if path == "" {
			return nil, nil
		}
		fs, err := newCgroupfs(path)
		if err != nil {
			return nil, err
		}
		return &HostCgroup{driver: fs}, nil
	}
	return nil, fmt.Errorf("cgroup driver %q: want cgroupfs or systemd", driver)
}

// Create makes the cgroup with limits sized for a VM of vmMemMiB (see
// hostLimitsFor). With systemd the scope starts at the first Add, which
// gives it the process it must hold.
func (c *HostCgroup) Create(res *specs.LinuxResources, vmMemMiB int) error {
	if c == nil {
		return nil
	}
	return c.driver.create(hostLimitsFor(res, vmMemMiB))
}

// Add moves a process (and so the children it starts later) into the
// cgroup.
func (c *HostCgroup) Add(pid int) error {
	if c == nil {
		return nil
	}
	return c.driver.add(pid)
}

// Remove deletes the cgroup once its processes are gone; a systemd scope
// is stopped, which ends what still runs in it.
func (c *HostCgroup) Remove() error {
	if c == nil {
		return nil
	}
	return c.driver.remove()
}

// JoinCgroup moves the calling process into the host cgroup of container
// id at path, made by driver; monitors call it first thing, so that QEMU
// starts inside. (The CLI front end puts its proxies in theirs, see
// ocicli.)
func JoinCgroup(driver CgroupDriver, path, id string) error {
	cg, err := NewHostCgroup(driver, path, id)
	if err != nil {
		return err
	}
	return cg.Add(os.Getpid())
}

// LeaveCgroups moves the calling process to the root cgroup of every
// hierarchy mounted under /sys/fs/cgroup, so that the cgroup it joined can
// go: a shim leaves its pod's cgroup so, whichever driver made it (a
// systemd scope holds a process in systemd's own name=systemd hierarchy
// too, and stopping the scope would kill it).
func LeaveCgroups() error {
	procs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "cgroup.procs")) // v1, and hybrid's unified
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		procs = []string{filepath.Join(cgroupRoot, "cgroup.procs")}
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	var errs []error
	for _, p := range procs {
		if err := os.WriteFile(p, self, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("leave cgroup: %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// hostLimits are the limits of a sandbox's host cgroup, sized for its VM;
// zero values mean no limit.
type hostLimits struct {
	// memoryBytes bounds QEMU: the VM's memory plus QEMU's own overhead.
	memoryBytes int64
	// quota and period are the CFS bandwidth in µs (period 0: the
	// kernel's default, 100 ms).
	quota  int64
	period uint64
	shares uint64
	// cpus and mems are cpuset lists ("0-3,5").
	cpus, mems string
}

// qemuOverheadMiB is what QEMU itself needs beyond guest RAM.
const qemuOverheadMiB = 96

// hostLimitsFor sizes the spec's limits for a VM of vmMemMiB: a memory
// limit in the spec becomes the VM's memory plus QEMU's own overhead,
// never less than what the guest was given; CPU limits are the spec's.
func hostLimitsFor(res *specs.LinuxResources, vmMemMiB int) hostLimits {
	var l hostLimits
	if res == nil {
		return l
	}
	if res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		l.memoryBytes = int64(vmMemMiB+qemuOverheadMiB) << 20
	}
	if cpu := res.CPU; cpu != nil {
		if cpu.Quota != nil && *cpu.Quota > 0 {
			l.quota = *cpu.Quota
			if cpu.Period != nil {
				l.period = *cpu.Period
			}
		}
		if cpu.Shares != nil {
			l.shares = *cpu.Shares
		}
		l.cpus, l.mems = cpu.Cpus, cpu.Mems
	}
	return l
}

// cgroupRoot is where cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Controllers are the hierarchies hull places sandbox processes in.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "cpuset", "pids", "devices"}

// hostDevice is a device a sandbox's host processes may open.
type hostDevice struct {
	major, minor int64
}

// hostDevices are the only devices a sandbox's host processes may open:
// what QEMU opens (the null devices, entropy, KVM, vhost) and the tun
// device the monitor makes taps with. The container's own device rules
// are enforced in the guest.
var hostDevices = []hostDevice{
	{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, // null zero full random urandom
	{10, 200}, {10, 232}, {10, 238}, {10, 241}, // tun kvm vhost-net vhost-vsock
}

// cgroupfs is a host cgroup that hull makes itself, as runc's cgroupfs
// driver does.
type cgroupfs struct {
	// dirs are the cgroup's directories, one per v1 hierarchy (or the one
	// unified directory).
	dirs    []string
	unified bool
}

func newCgroupfs(path string) (*cgroupfs, error) {
	clean := cgroupfsPath(path)
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &cgroupfs{dirs: []string{filepath.Join(cgroupRoot, clean)}, unified: true}, nil
	}
	cg := &cgroupfs{}
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

// create makes the directories and writes the limits: memory, CFS quota,
// CPU weight and set, devices (v1).
func (c *cgroupfs) create(l hostLimits) error {
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
	if l.memoryBytes > 0 {
		limit := strconv.FormatInt(l.memoryBytes, 10)
		if err := c.write("memory.limit_in_bytes", "memory.max", limit); err != nil {
			return err
		}
	}
	if l.quota > 0 && l.period > 0 {
		if c.unified {
			return c.write("", "cpu.max", fmt.Sprintf("%d %d", l.quota, l.period))
		}
		if err := c.write("cpu.cfs_period_us", "", strconv.FormatUint(l.period, 10)); err != nil {
			return err
		}
		if err := c.write("cpu.cfs_quota_us", "", strconv.FormatInt(l.quota, 10)); err != nil {
			return err
		}
	}
	return c.limitCPU(l)
}

// limitCPU sets the spec's CPU weight and CPU set (the quota is set above):
// QEMU's threads compete for, and run on, what the pod was given.
func (c *cgroupfs) limitCPU(l hostLimits) error {
	if l.shares > 0 {
		if c.unified {
			if err := c.write("", "cpu.weight", strconv.FormatUint(sharesToWeight(l.shares), 10)); err != nil {
				return err
			}
		} else if err := c.write("cpu.shares", "", strconv.FormatUint(l.shares, 10)); err != nil {
			return err
		}
	}
	if l.cpus != "" {
		if err := c.write("cpuset.cpus", "cpuset.cpus", l.cpus); err != nil {
			return err
		}
	}
	if l.mems != "" {
		if err := c.write("cpuset.mems", "cpuset.mems", l.mems); err != nil {
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
func (c *cgroupfs) initCpuset() error {
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
func (c *cgroupfs) limitDevices() error {
	if c.unified {
		return nil
	}
	if err := c.write("devices.deny", "", "a"); err != nil {
		return err
	}
	for _, d := range hostDevices {
		if err := c.write("devices.allow", "", fmt.Sprintf("c %d:%d rwm", d.major, d.minor)); err != nil {
			return err
		}
	}
	return nil
}

// write sets a control file: v1's name in the directory that has it, or
// v2's in the unified directory.
func (c *cgroupfs) write(v1, v2, value string) error {
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

func (c *cgroupfs) add(pid int) error {
	for _, d := range c.dirs {
		err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("add %d to cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// remove retries briefly while exiting processes leave the cgroup.
func (c *cgroupfs) remove() error {
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
