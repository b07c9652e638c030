package pod

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeSystemd is systemd's manager as the driver sees it over D-Bus: the
// units it runs, with their properties and processes, and the rules the
// real one applies (a scope needs a process; a name is taken until the
// unit is stopped, or reset when it failed).
type fakeSystemd struct {
	mu    sync.Mutex
	units map[string]*fakeUnit
	calls []string
}

type fakeUnit struct {
	props  map[string]any
	pids   []uint32
	failed bool
}

func newFakeSystemd() *fakeSystemd { return &fakeSystemd{units: map[string]*fakeUnit{}} }

func (f *fakeSystemd) dial(context.Context) (systemdBus, error) { return fakeBus{f}, nil }

func (f *fakeSystemd) unit(name string) *fakeUnit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.units[name]
}

// fakeBus is one connection to fakeSystemd.
type fakeBus struct{ f *fakeSystemd }

func (b fakeBus) call(format string, args ...any) {
	b.f.calls = append(b.f.calls, fmt.Sprintf(format, args...))
}

func (b fakeBus) StartTransientUnit(_ context.Context, name string, props []sddbus.Property) error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.call("start %s", name)
	if _, ok := b.f.units[name]; ok {
		return fmt.Errorf("%w: Unit %s was already loaded or has a fragment file", errUnitExists, name)
	}
	u := &fakeUnit{props: map[string]any{}}
	for _, p := range props {
		if _, dup := u.props[p.Name]; dup {
			return fmt.Errorf("property %s set twice", p.Name)
		}
		u.props[p.Name] = p.Value.Value()
	}
	u.pids, _ = u.props["PIDs"].([]uint32)
	if strings.HasSuffix(name, ".scope") && len(u.pids) == 0 {
		return errors.New("No PIDs specified") // systemd's words
	}
	b.f.units[name] = u
	return nil
}

func (b fakeBus) AttachProcesses(_ context.Context, unit string, pids []uint32) error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.call("attach %s %v", unit, pids)
	u, ok := b.f.units[unit]
	if !ok {
		return fmt.Errorf("%w: Unit %s not loaded", errNoSuchUnit, unit)
	}
	u.pids = append(u.pids, pids...)
	return nil
}

func (b fakeBus) StopUnit(_ context.Context, name string) error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.call("stop %s", name)
	if _, ok := b.f.units[name]; !ok {
		return fmt.Errorf("%w: Unit %s not loaded", errNoSuchUnit, name)
	}
	delete(b.f.units, name)
	return nil
}

func (b fakeBus) ResetFailedUnit(_ context.Context, name string) error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.call("reset-failed %s", name)
	u, ok := b.f.units[name]
	if !ok {
		return fmt.Errorf("%w: Unit %s not loaded", errNoSuchUnit, name)
	}
	if u.failed {
		delete(b.f.units, name)
	}
	return nil
}

func (b fakeBus) Close() {}

// As runc's systemd driver: "slice:prefix:name" is <prefix>-<name>.scope,
// placed below the slice's parents.
func TestSystemdUnit(t *testing.T) {
	for _, tc := range []struct {
		path, id           string
		slice, unit, cgdir string
	}{
		{"kubepods-burstable-pod1a2b.slice:crio:0123abcd", "x", "kubepods-burstable-pod1a2b.slice", "crio-0123abcd.scope",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/crio-0123abcd.scope"},
		{"test.slice:cri-containerd:c1", "x", "test.slice", "cri-containerd-c1.scope", "/test.slice/cri-containerd-c1.scope"},
		{"system.slice:docker:abc", "x", "system.slice", "docker-abc.scope", "/system.slice/docker-abc.scope"},
		{":crio:c1", "x", "system.slice", "crio-c1.scope", "/system.slice/crio-c1.scope"},
		{"machine.slice::c1", "x", "machine.slice", "c1.scope", "/machine.slice/c1.scope"},
		{"-.slice:hull:c1", "x", "-.slice", "hull-c1.scope", "/hull-c1.scope"},
		{"", "sb1", "system.slice", "hull-sb1.scope", "/system.slice/hull-sb1.scope"},
	} {
		slice, unit, err := systemdUnit(tc.path, tc.id)
		if err != nil {
			t.Errorf("systemdUnit(%q): %v", tc.path, err)
			continue
		}
		s := &systemdScope{slice: slice, unit: unit}
		if slice != tc.slice || unit != tc.unit || s.scopeCgroup() != tc.cgdir {
			t.Errorf("systemdUnit(%q) = %s in %s at %s, want %s in %s at %s", tc.path, unit, slice, s.scopeCgroup(), tc.unit, tc.slice, tc.cgdir)
		}
	}
}

func TestSystemdUnitRefused(t *testing.T) {
	for path, want := range map[string]string{
		"/kubepods/pod1/c1":          `wants "slice:prefix:name"`,
		"kubepods/pod1":              `wants "slice:prefix:name"`,
		"test.slice:c1":              `wants "slice:prefix:name"`,
		"a.slice:b:c:d":              `wants "slice:prefix:name"`,
		"test:crio:c1":               `invalid slice name "test"`,
		"a--b.slice:crio:c1":         `invalid slice name "a--b.slice"`,
		"-a.slice:crio:c1":           `invalid slice name "-a.slice"`,
		"a-.slice:crio:c1":           `invalid slice name "a-.slice"`,
		".slice:crio:c1":             `invalid slice name ".slice"`,
		"a/b.slice:crio:c1":          `invalid slice name "a/b.slice"`,
		"test.slice:crio:":           `"crio-.scope" is not a valid systemd unit name`,
		"test.slice:crio:a b":        `"crio-a b.scope" is not a valid systemd unit name`,
		"test.slice:cr/io:c1":        `"cr/io-c1.scope" is not a valid systemd unit name`,
		"test.slice:crio:pod.slice":  "asks for a slice",
		"test.slice:crio:" + long255: "is not a valid systemd unit name",
	} {
		_, _, err := systemdUnit(path, "x")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cgroupsPath") {
			t.Errorf("systemdUnit(%q) = %v, want an error about the cgroupsPath saying %s", path, err, want)
		}
	}
}

var long255 = strings.Repeat("a", 250)

func TestExpandSlice(t *testing.T) {
	for slice, want := range map[string]string{
		"-.slice":                      "/",
		"system.slice":                 "/system.slice",
		"a-b-c.slice":                  "/a.slice/a-b.slice/a-b-c.slice",
		"kubepods-besteffort.slice":    "/kubepods.slice/kubepods-besteffort.slice",
		"user-1000.slice":              "/user.slice/user-1000.slice",
		"kubepods-pod_1.2.slice":       "/kubepods.slice/kubepods-pod_1.2.slice",
		"machine-qemu\\x2d1.slice":     "/machine.slice/machine-qemu\\x2d1.slice",
		"kubepods-burstable-p9.slice":  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-p9.slice",
		"a.slice":                      "/a.slice",
		"very-deep-tree-of-nine.slice": "/very.slice/very-deep.slice/very-deep-tree.slice/very-deep-tree-of.slice/very-deep-tree-of-nine.slice",
	} {
		if got, err := expandSlice(slice); err != nil || got != want {
			t.Errorf("expandSlice(%q) = %q, %v; want %q", slice, got, err, want)
		}
	}
	for _, bad := range []string{"", ".slice", "a", "a.scope", "a--b.slice", "-a.slice", "a-.slice", "--.slice", "a/b.slice", "a b.slice"} {
		if got, err := expandSlice(bad); err == nil {
			t.Errorf("expandSlice(%q) = %q, want an error", bad, got)
		}
	}
}

func propMap(props []sddbus.Property) map[string]any {
	m := map[string]any{}
	for _, p := range props {
		m[p.Name] = p.Value.Value()
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// Each of the spec's limits, sized for the VM, as the scope property
// systemd takes for it on v1 and on v2.
func TestScopeProperties(t *testing.T) {
	const vmMiB = 256
	vmBytes := uint64(vmMiB+qemuOverheadMiB) << 20
	for _, tc := range []struct {
		name    string
		res     *specs.LinuxResources
		unified bool
		want    map[string]any // the limit properties; nothing else
	}{
		{"no limits", nil, false, map[string]any{}},
		{"no limits (v2)", &specs.LinuxResources{}, true, map[string]any{}},
		{"memory (v1)", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](128 << 20)}}, false,
			map[string]any{"MemoryLimit": vmBytes}},
		{"memory (v2)", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](128 << 20)}}, true,
			map[string]any{"MemoryMax": vmBytes}},
		{"memory unlimited", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)}}, false, map[string]any{}},
		{"half a CPU", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](50000), Period: ptr[uint64](100000)}}, false,
			map[string]any{"CPUQuotaPerSecUSec": uint64(500000)}},
		{"quota without a period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](150000)}}, false,
			map[string]any{"CPUQuotaPerSecUSec": uint64(1500000)}},
		{"a third of a CPU, rounded up to 10 ms", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](33333), Period: ptr[uint64](100000)}}, false,
			map[string]any{"CPUQuotaPerSecUSec": uint64(340000)}},
		{"another period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](20000), Period: ptr[uint64](50000)}}, true,
			map[string]any{"CPUQuotaPeriodUSec": uint64(50000), "CPUQuotaPerSecUSec": uint64(400000)}},
		{"no quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1), Period: ptr[uint64](100000)}}, false, map[string]any{}},
		{"shares (v1)", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](1024)}}, false,
			map[string]any{"CPUShares": uint64(1024)}},
		{"shares as a weight (v2)", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](1024)}}, true,
			map[string]any{"CPUWeight": uint64(39)}},
		{"cpuset (v2)", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,5,9", Mems: "0"}}, true,
			map[string]any{"AllowedCPUs": []byte{0x27, 0x02}, "AllowedMemoryNodes": []byte{0x01}}},
		{"cpuset (v1: not systemd's)", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2", Mems: "0"}}, false, map[string]any{}},
		{"all (v1)", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20)},
			CPU: &specs.LinuxCPU{Quota: ptr[int64](200000), Period: ptr[uint64](100000), Shares: ptr[uint64](512)}}, false,
			map[string]any{"MemoryLimit": vmBytes, "CPUQuotaPerSecUSec": uint64(2000000), "CPUShares": uint64(512)}},
	} {
		got := propMap(scopeProperties("kubepods-pod1.slice", "crio-c1.scope", hostLimitsFor(tc.res, vmMiB), tc.unified))
		base := map[string]any{
			"Description": "hull sandbox crio-c1.scope", "Slice": "kubepods-pod1.slice", "Delegate": true, "DefaultDependencies": false,
			"MemoryAccounting": true, "CPUAccounting": true, "TasksAccounting": true, "DevicePolicy": "strict",
		}
		for k, v := range base {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s: %s = %#v, want %#v", tc.name, k, got[k], v)
			}
			delete(got, k)
		}
		devices, _ := got["DeviceAllow"].([]deviceAllowEntry)
		if !slices.Contains(devices, deviceAllowEntry{"/dev/char/10:200", "rwm"}) || !slices.Contains(devices, deviceAllowEntry{"/dev/char/1:3", "rwm"}) || len(devices) != len(hostDevices) {
			t.Errorf("%s: DeviceAllow = %v, want hostDevices (tun, null, ...)", tc.name, devices)
		}
		delete(got, "DeviceAllow")
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: limit properties %#v, want %#v", tc.name, got, tc.want)
		}
	}
}

func TestCPUConversions(t *testing.T) {
	if got := cpuQuotaPerSec(-1, 100000); got != math.MaxUint64 {
		t.Errorf("no quota: %d, want infinity", got)
	}
	for _, bad := range []string{"a", "3-1", "0-", "1,,2"} {
		if b, err := cpusetBits(bad); err == nil {
			t.Errorf("cpusetBits(%q) = %v, want an error", bad, b)
		}
	}
}

func testScope(t *testing.T, f *fakeSystemd, path, id string) *HostCgroup {
	t.Helper()
	s, err := newSystemdScope(path, id, f.dial)
	if err != nil {
		t.Fatal(err)
	}
	return &HostCgroup{driver: s}
}

// The creator starts the scope with its first process and the limits; every
// other process (later ones of the creator, the monitor, an exec's proxy)
// joins it; the delete stops it, and a scope already gone is no error.
func TestSystemdScopeLifecycle(t *testing.T) {
	f := newFakeSystemd()
	const unit = "crio-c1.scope"
	cg := testScope(t, f, "kubepods-pod1.slice:crio:c1", "c1")
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](100 << 20)}}
	if err := cg.Create(res, 200); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Fatalf("create called systemd before there is a process for the scope: %v", f.calls)
	}
	if err := cg.Add(100); err != nil {
		t.Fatal(err)
	}
	u := f.unit(unit)
	if u == nil {
		t.Fatalf("no %s after the first add; calls %v", unit, f.calls)
	}
	if u.props["Slice"] != "kubepods-pod1.slice" || u.props["Delegate"] != true {
		t.Errorf("scope started with %v", u.props)
	}
	if _, ok := u.props["MemoryLimit"]; !ok {
		if _, ok := u.props["MemoryMax"]; !ok {
			t.Errorf("scope started without the memory limit: %v", u.props)
		}
	}
	if err := cg.Add(101); err != nil {
		t.Fatal(err)
	}
	monitor := testScope(t, f, "kubepods-pod1.slice:crio:c1", "c1")
	if err := monitor.Add(102); err != nil {
		t.Fatal(err)
	}
	if want := []uint32{100, 101, 102}; !reflect.DeepEqual(u.pids, want) {
		t.Errorf("scope holds %v, want %v", u.pids, want)
	}
	if err := monitor.Remove(); err != nil {
		t.Fatal(err)
	}
	if f.unit(unit) != nil {
		t.Error("the scope outlived its remove")
	}
	if err := cg.Remove(); err != nil {
		t.Errorf("remove of a scope already gone: %v", err)
	}
	want := []string{"start " + unit, "attach " + unit + " [101]", "attach " + unit + " [102]",
		"stop " + unit, "reset-failed " + unit, "stop " + unit, "reset-failed " + unit}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", f.calls, want)
	}
}

func TestSystemdScopeJoinMissing(t *testing.T) {
	f := newFakeSystemd()
	err := testScope(t, f, "test.slice:crio:c1", "c1").Add(7)
	if !errors.Is(err, errNoSuchUnit) || !strings.Contains(err.Error(), "crio-c1.scope") {
		t.Errorf("joining a scope nobody started: %v", err)
	}
}

// A failed scope of the same name is reset and the start tried again, as
// runc does; a running one is another sandbox's and is left alone.
func TestSystemdScopeNameTaken(t *testing.T) {
	f := newFakeSystemd()
	f.units["crio-c1.scope"] = &fakeUnit{failed: true}
	cg := testScope(t, f, "test.slice:crio:c1", "c1")
	if err := cg.Create(nil, 256); err != nil {
		t.Fatal(err)
	}
	if err := cg.Add(9); err != nil {
		t.Fatalf("start over a failed scope: %v", err)
	}
	if u := f.unit("crio-c1.scope"); u == nil || !reflect.DeepEqual(u.pids, []uint32{9}) {
		t.Errorf("scope after the retry: %+v", u)
	}

	f = newFakeSystemd()
	f.units["crio-c1.scope"] = &fakeUnit{pids: []uint32{1234}}
	cg = testScope(t, f, "test.slice:crio:c1", "c1")
	if err := cg.Create(nil, 256); err != nil {
		t.Fatal(err)
	}
	err := cg.Add(9)
	if !errors.Is(err, errUnitExists) || !strings.Contains(err.Error(), "start scope crio-c1.scope in test.slice") {
		t.Errorf("start over another sandbox's running scope: %v", err)
	}
	if u := f.unit("crio-c1.scope"); !reflect.DeepEqual(u.pids, []uint32{1234}) {
		t.Errorf("the running scope was touched: %+v", u)
	}
}

func TestBusError(t *testing.T) {
	for name, want := range map[string]error{
		"org.freedesktop.systemd1.UnitExists": errUnitExists,
		"org.freedesktop.systemd1.NoSuchUnit": errNoSuchUnit,
	} {
		err := busError(dbusError(name))
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	if err := busError(dbusError("org.freedesktop.DBus.Error.AccessDenied")); errors.Is(err, errUnitExists) || errors.Is(err, errNoSuchUnit) {
		t.Errorf("access denied taken for %v", err)
	}
	if busError(nil) != nil {
		t.Error("busError(nil) != nil")
	}
}

func dbusError(name string) error { return dbus.Error{Name: name, Body: []any{"message"}} }
