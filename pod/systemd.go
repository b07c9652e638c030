package pod

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// systemdBus is what the systemd driver asks of systemd's manager over
// D-Bus: dbusSystemd on the system bus, a fake in the unit tests. Starting
// and stopping wait for systemd's job to finish.
type systemdBus interface {
	StartTransientUnit(ctx context.Context, name string, props []sddbus.Property) error
	AttachProcesses(ctx context.Context, unit string, pids []uint32) error
	StopUnit(ctx context.Context, name string) error
	ResetFailedUnit(ctx context.Context, name string) error
	Close()
}

// Errors of systemd's manager the driver branches on.
var (
	errUnitExists = errors.New("unit exists")
	errNoSuchUnit = errors.New("no such unit")
)

// systemdTimeout bounds each exchange with systemd, its job included (runc
// waits as long).
const systemdTimeout = 30 * time.Second

// defaultCPUPeriod is the kernel's CFS period, and systemd's, in µs.
const defaultCPUPeriod = 100000

// systemdScope is a host cgroup that systemd makes: a transient scope, as
// runc's systemd driver makes one. The process that creates it starts the
// scope at its first add, with that process in it and the limits as the
// scope's properties; every other add, from that process or another (the
// monitor, an exec's proxy), joins the running scope.
type systemdScope struct {
	slice, unit string
	// unified is cgroup v2: systemd takes MemoryMax and CPUWeight there,
	// MemoryLimit and CPUShares on v1.
	unified bool
	dial    func(context.Context) (systemdBus, error)
	// props are set by create; started once the scope runs.
	props   []sddbus.Property
	started bool
}

func newSystemdScope(path, id string, dial func(context.Context) (systemdBus, error)) (*systemdScope, error) {
	slice, unit, err := systemdUnit(path, id)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	return &systemdScope{slice: slice, unit: unit, unified: st.Type == unix.CGROUP2_SUPER_MAGIC, dial: dial}, nil
}

// systemdUnit maps a cgroupsPath to the slice and scope runc's systemd
// driver makes for it: "slice:prefix:name" is "<prefix>-<name>.scope" in
// <slice>, system.slice when the slice is empty; an empty path is
// "hull-<id>.scope" in system.slice. With no prefix the scope is
// "<name>.scope" (today's runc makes "-<name>.scope"; no caller sends
// that form).
func systemdUnit(path, id string) (slice, unit string, err error) {
	if path == "" {
		path = ":hull:" + id
	}
	parts := strings.Split(path, ":")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("cgroupsPath %q: the systemd cgroup driver wants \"slice:prefix:name\"", path)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	if _, err := expandSlice(slice); err != nil {
		return "", "", fmt.Errorf("cgroupsPath %q: %w", path, err)
	}
	if strings.HasSuffix(name, ".slice") {
		return "", "", fmt.Errorf("cgroupsPath %q: a name ending in .slice asks for a slice, which cannot hold a sandbox's processes; give a scope's name", path)
	}
	unit = name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	if name == "" || !validUnitChars(prefix+name) || len(unit) > 255 {
		return "", "", fmt.Errorf("cgroupsPath %q: %q is not a valid systemd unit name", path, unit)
	}
	return slice, unit, nil
}

// validUnitChars reports whether s holds only what systemd allows in a
// unit name.
func validUnitChars(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(`-_.\`, r):
		default:
			return false
		}
	}
	return true
}

// expandSlice is where systemd puts a slice in the cgroup tree: the dashes
// separate its parents, so "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice"
// and the root slice "-.slice" is "/".
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") || !validUnitChars(name) {
		return "", fmt.Errorf("invalid slice name %q", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var path, prefix string
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("invalid slice name %q", slice) // "a--b.slice", "-a.slice", "a-.slice"
		}
		path += "/" + prefix + part + ".slice"
		prefix += part + "-"
	}
	return path, nil
}

// scopeCgroup is the scope's cgroup below systemd's root in each
// hierarchy, where systemd will make it.
func (s *systemdScope) scopeCgroup() string {
	dir, _ := expandSlice(s.slice) // checked by systemdUnit
	return strings.TrimSuffix(dir, "/") + "/" + s.unit
}

// create names the scope's properties; the first add starts it.
func (s *systemdScope) create(l hostLimits) error {
	s.props = scopeProperties(s.slice, s.unit, l, s.unified)
	return nil
}

// scopeProperties are the properties a scope starts with, as runc's
// systemd driver sets them (delegated, no default dependencies, accounting
// on) and the limits as systemd's equivalents: the memory bound, CPU
// quota and shares or weight, CPU and memory node sets (v2 only: systemd
// does not drive the v1 cpuset controller), and the devices that
// hostDevices allows.
func scopeProperties(slice, unit string, l hostLimits, unified bool) []sddbus.Property {
	props := []sddbus.Property{
		sddbus.PropDescription("hull sandbox " + unit),
		sddbus.PropSlice(slice),
		newProp("Delegate", true),
		newProp("DefaultDependencies", false),
		newProp("MemoryAccounting", true),
		newProp("CPUAccounting", true),
		newProp("TasksAccounting", true),
		newProp("DevicePolicy", "strict"),
		newProp("DeviceAllow", deviceAllow()),
	}
	if l.memoryBytes > 0 {
		name := "MemoryLimit"
		if unified {
			name = "MemoryMax"
		}
		props = append(props, newProp(name, uint64(l.memoryBytes)))
	}
	if l.quota > 0 {
		period := l.period
		if period == 0 {
			period = defaultCPUPeriod
		}
		// Only a period other than the default is sent: systemd before 242
		// does not know the property.
		if period != defaultCPUPeriod {
			props = append(props, newProp("CPUQuotaPeriodUSec", period))
		}
		props = append(props, newProp("CPUQuotaPerSecUSec", cpuQuotaPerSec(l.quota, period)))
	}
	if l.shares > 0 {
		if unified {
			props = append(props, newProp("CPUWeight", sharesToWeight(l.shares)))
		} else {
			props = append(props, newProp("CPUShares", l.shares))
		}
	}
	if unified {
		if bits, err := cpusetBits(l.cpus); err == nil && bits != nil {
			props = append(props, newProp("AllowedCPUs", bits))
		}
		if bits, err := cpusetBits(l.mems); err == nil && bits != nil {
			props = append(props, newProp("AllowedMemoryNodes", bits))
		}
	}
	return props
}

func newProp(name string, value any) sddbus.Property {
	return sddbus.Property{Name: name, Value: dbus.MakeVariant(value)}
}

// deviceAllowEntry is one DeviceAllow= entry, D-Bus signature (ss).
type deviceAllowEntry struct {
	Path, Access string
}

// deviceAllow names hostDevices by number ("/dev/char/MAJOR:MINOR"), which
// systemd takes without the node having to exist.
func deviceAllow() []deviceAllowEntry {
	var out []deviceAllowEntry
	for _, d := range hostDevices {
		out = append(out, deviceAllowEntry{Path: fmt.Sprintf("/dev/char/%d:%d", d.major, d.minor), Access: "rwm"})
	}
	return out
}

// cpuQuotaPerSec is a CFS quota per period as systemd's CPUQuotaPerSecUSec
// (µs of CPU per second), rounded up to 10 ms as runc rounds it: systemd
// keeps the quota as a whole percentage.
func cpuQuotaPerSec(quota int64, period uint64) uint64 {
	if quota <= 0 || period == 0 {
		return math.MaxUint64 // infinity
	}
	perSec := uint64(quota) * 1000000 / period
	if perSec%10000 != 0 {
		perSec = (perSec/10000 + 1) * 10000
	}
	return perSec
}

// cpusetBits turns a cpuset list ("0-3,8") into the bitmask systemd's
// AllowedCPUs= takes: bit n (byte n/8, bit n%8) for CPU n. nil for "".
func cpusetBits(list string) ([]byte, error) {
	if list == "" {
		return nil, nil
	}
	var bits []byte
	for _, r := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(r), "-")
		first, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("cpuset %q: %w", list, err)
		}
		last := first
		if isRange {
			if last, err = strconv.ParseUint(hi, 10, 16); err != nil || last < first {
				return nil, fmt.Errorf("cpuset %q: bad range %q", list, r)
			}
		}
		for n := first; n <= last; n++ {
			for uint64(len(bits)) <= n/8 {
				bits = append(bits, 0)
			}
			bits[n/8] |= 1 << (n % 8)
		}
	}
	return bits, nil
}

func (s *systemdScope) add(pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	bus, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("add %d to scope %s: %w", pid, s.unit, err)
	}
	defer bus.Close()
	if s.props == nil || s.started {
		if err := bus.AttachProcesses(ctx, s.unit, []uint32{uint32(pid)}); err != nil {
			return fmt.Errorf("add %d to scope %s: %w", pid, s.unit, err)
		}
		return nil
	}
	props := append(slices.Clip(s.props), sddbus.PropPids(uint32(pid)))
	err = bus.StartTransientUnit(ctx, s.unit, props)
	if errors.Is(err, errUnitExists) {
		// A scope of that name that failed stays loaded until reset; runc
		// resets it and tries once more. A running one is another
		// sandbox's, and the second start fails too.
		_ = bus.ResetFailedUnit(ctx, s.unit)
		err = bus.StartTransientUnit(ctx, s.unit, props)
	}
	if err != nil {
		return fmt.Errorf("start scope %s in %s: %w", s.unit, s.slice, err)
	}
	s.started = true
	return nil
}

// remove stops the scope, which ends what still runs in it; a scope
// already gone (systemd drops an empty one by itself) is not an error.
func (s *systemdScope) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	bus, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("stop scope %s: %w", s.unit, err)
	}
	defer bus.Close()
	err = bus.StopUnit(ctx, s.unit)
	if errors.Is(err, errNoSuchUnit) {
		err = nil
	}
	// A scope whose processes were killed is "failed" and stays listed
	// until reset.
	_ = bus.ResetFailedUnit(ctx, s.unit)
	if err != nil {
		return fmt.Errorf("stop scope %s: %w", s.unit, err)
	}
	return nil
}

// SystemdBooted reports whether systemd is PID 1 here, as sd_booted(3)
// tells: /run/systemd/system is a directory.
func SystemdBooted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}
