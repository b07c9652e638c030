package pod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// As runc's cgroupfs driver: every path it accepts, placed where it
// places it.
func TestCgroupfsPath(t *testing.T) {
	for path, want := range map[string]string{
		"/kubepods/pod1/c1":                   "/kubepods/pod1/c1",
		"kubepods/pod1/c1":                    "/kubepods/pod1/c1",
		"/docker/abc/../def":                  "/docker/def",
		"../../escape":                        "/escape",
		"test.slice:cri-containerd:abc":       "/test.slice:cri-containerd:abc",
		"kubepods-pod1.slice:crio:0123abcdef": "/kubepods-pod1.slice:crio:0123abcdef",
	} {
		if got := cgroupfsPath(path); got != want {
			t.Errorf("cgroupfsPath(%q) = %q, want %q", path, got, want)
		}
	}
}

// fakeCgroupDir makes a cgroup directory holding the named control files,
// empty.
func fakeCgroupDir(t *testing.T, files ...string) string {
	t.Helper()
	d := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func readControl(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The spec's CPU weight, CPUs and quota reach the sandbox's host cgroup, in
// v1's files and in v2's.
func TestHostCgroupCPULimits(t *testing.T) {
	shares, quota, period := uint64(512), int64(20000), uint64(100000)
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0", Mems: "0"}}

	cpu := fakeCgroupDir(t, "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us")
	cpuset := fakeCgroupDir(t, "cpuset.cpus", "cpuset.mems")
	v1 := &cgroupfs{dirs: []string{cpu, cpuset}}
	if err := v1.limitCPU(hostLimitsFor(res, 256)); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]map[string]string{
		cpu:    {"cpu.shares": "512"},
		cpuset: {"cpuset.cpus": "0", "cpuset.mems": "0"},
	} {
		for f, v := range want {
			if got := readControl(t, dir, f); got != v {
				t.Errorf("v1 %s = %q, want %q", f, got, v)
			}
		}
	}

	unified := fakeCgroupDir(t, "cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems")
	v2 := &cgroupfs{dirs: []string{unified}, unified: true}
	if err := v2.limitCPU(hostLimitsFor(res, 256)); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"cpu.weight": "20", "cpuset.cpus": "0", "cpuset.mems": "0"} {
		if got := readControl(t, unified, f); got != want {
			t.Errorf("v2 %s = %q, want %q", f, got, want)
		}
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

// A new v1 cpuset directory takes its parent's CPUs and memory nodes, level
// by level, and one already set keeps its own.
func TestFillCpuset(t *testing.T) {
	root := t.TempDir()
	write := func(dir, f, v string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(root, "cpuset.cpus", "0-1\n")
	write(root, "cpuset.mems", "0\n")
	mid, leaf := filepath.Join(root, "kubepods"), filepath.Join(root, "kubepods", "pod1")
	write(mid, "cpuset.cpus", "1\n") // set by someone: kept
	write(mid, "cpuset.mems", "")
	write(leaf, "cpuset.cpus", "")
	write(leaf, "cpuset.mems", "")
	if err := fillCpuset(root, "kubepods/pod1"); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string][2]string{mid: {"1\n", "0\n"}, leaf: {"1\n", "0\n"}} {
		if got := readControl(t, dir, "cpuset.cpus"); got != want[0] {
			t.Errorf("%s cpuset.cpus = %q, want %q", dir, got, want[0])
		}
		if got := readControl(t, dir, "cpuset.mems"); got != want[1] {
			t.Errorf("%s cpuset.mems = %q, want %q", dir, got, want[1])
		}
	}
}

func TestIsSystemdPath(t *testing.T) {
	for path, want := range map[string]bool{
		"kubepods-burstable-pod1.slice:crio:abc": true,
		"test.slice:cri-containerd:abc":          true,
		":docker:abc":                            true,
		"system.slice::abc":                      true,
		"/kubepods/pod1/c1":                      false,
		"kubepods/c1":                            false,
		"":                                       false,
		"test.slice:abc":                         false,
		"a:b:c":                                  false,
		"/test.slice:crio:abc":                   false,
	} {
		if got := IsSystemdPath(path); got != want {
			t.Errorf("IsSystemdPath(%q) = %v, want %v", path, got, want)
		}
	}
}

// The CLI's driver is runc's: systemd only when asked, and refused without
// systemd; the shim's follows a systemd-form path where systemd is PID 1
// (Kata's rule).
func TestCgroupDriverChoice(t *testing.T) {
	for _, tc := range []struct {
		flag, booted bool
		want         CgroupDriver
		why          string
	}{
		{false, false, Cgroupfs, "no --systemd-cgroup (systemd is not PID 1 here)"},
		{false, true, Cgroupfs, "no --systemd-cgroup (systemd is PID 1, but the caller uses cgroupfs)"},
		{true, true, Systemd, "--systemd-cgroup given, and systemd is PID 1"},
	} {
		got, err := cliCgroupDriver(tc.flag, tc.booted)
		if err != nil || got.Driver != tc.want || got.Why != tc.why {
			t.Errorf("CLI, flag %v, booted %v: %v (%q), %v; want %v (%q)", tc.flag, tc.booted, got.Driver, got.Why, err, tc.want, tc.why)
		}
	}
	if _, err := cliCgroupDriver(true, false); err == nil || !strings.HasPrefix(err.Error(), "--systemd-cgroup: systemd is not running on this host") {
		t.Errorf("--systemd-cgroup where systemd is not PID 1: %v", err)
	}
	for _, tc := range []struct {
		path   string
		booted bool
		want   CgroupDriver
		why    string
	}{
		{"kubepods-pod1.slice:cri-containerd:p1", true, Systemd, "cgroupsPath in systemd form (slice:prefix:name), and systemd is PID 1"},
		{"kubepods-pod1.slice:cri-containerd:p1", false, Cgroupfs, "cgroupsPath in systemd form, but systemd is not PID 1 here: one directory of that name"},
		{"/k8s.io/p1", true, Cgroupfs, "cgroupsPath not in systemd form"},
		{"", true, Cgroupfs, "cgroupsPath not in systemd form"},
	} {
		if got := shimCgroupDriver(tc.path, tc.booted); got.Driver != tc.want || got.Why != tc.why {
			t.Errorf("shim, %q, booted %v: %v (%q); want %v (%q)", tc.path, tc.booted, got.Driver, got.Why, tc.want, tc.why)
		}
	}
}

func TestNewHostCgroupDrivers(t *testing.T) {
	if cg, err := NewHostCgroup(Cgroupfs, "", "c1"); cg != nil || err != nil {
		t.Errorf("cgroupfs, no path: %v, %v; want no cgroup", cg, err)
	}
	if cg, err := NewHostCgroup(Systemd, "", "c1"); err != nil || cg.driver.(*systemdScope).unit != "hull-c1.scope" {
		t.Errorf("systemd, no path: %v, %v; want runc's default scope", cg, err)
	}
	if _, err := NewHostCgroup(Systemd, "/kubepods/c1", "c1"); err == nil || !strings.Contains(err.Error(), "slice:prefix:name") {
		t.Errorf("systemd, a cgroupfs path: %v", err)
	}
	if _, err := NewHostCgroup("lxc", "/a", "c1"); err == nil {
		t.Error("an unknown driver was taken")
	}
	var none *HostCgroup
	if none.Create(nil, 1) != nil || none.Add(1) != nil || none.Remove() != nil {
		t.Error("no cgroup is not a no-op")
	}
}
