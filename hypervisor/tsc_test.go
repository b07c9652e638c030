package hypervisor

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuinfoField is the value of the first "key: value" line of
// /proc/cpuinfo with that key, "" if none.
func cpuinfoField(key string) string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func cpuinfoMHz() float64 {
	mhz, _ := strconv.ParseFloat(cpuinfoField("cpu MHz"), 64)
	return mhz
}

func hasCPUFlag(flag string) bool {
	return slices.Contains(strings.Fields(cpuinfoField("flags")), flag)
}

func TestHostTSCKHz(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		if _, err := HostTSCKHz(time.Millisecond); err == nil {
			t.Fatal("HostTSCKHz on a non-x86 host: want an error")
		}
		return
	}
	khz, err := HostTSCKHz(20 * time.Millisecond)
	if err != nil {
		t.Fatalf("HostTSCKHz: %v", err)
	}
	// Where the kernel knows the TSC rate and frequency scaling is absent,
	// /proc/cpuinfo's "cpu MHz" is that rate; elsewhere it is the current
	// core clock and says nothing about the TSC.
	if mhz := cpuinfoMHz(); mhz > 0 && hasCPUFlag("tsc_known_freq") && !hasCPUFlag("aperfmperf") {
		want := mhz * 1000
		if d := (float64(khz) - want) / want; d > 0.01 || d < -0.01 {
			t.Errorf("HostTSCKHz = %d kHz, /proc/cpuinfo says %.0f kHz: off by %.2f%%", khz, want, d*100)
		}
	}
	// Two measurements agree to well within the 1% the guest tolerates.
	again, err := HostTSCKHz(20 * time.Millisecond)
	if err != nil {
		t.Fatalf("HostTSCKHz again: %v", err)
	}
	if d := float64(int64(again)-int64(khz)) / float64(khz); d > 0.005 || d < -0.005 {
		t.Errorf("two measurements differ by %.2f%%: %d and %d kHz", d*100, khz, again)
	}
}

func TestTCGKernelParams(t *testing.T) {
	a, err := ResolveAccel("tcg", "/nonexistent/kvm", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	joined := " " + strings.Join(a.KernelParams, " ") + " "
	if !strings.Contains(joined, " noapictimer ") {
		t.Errorf("TCG kernel params %q lack noapictimer", joined)
	}
	if runtime.GOARCH == "amd64" && !strings.Contains(joined, " tsc_early_khz=") {
		t.Errorf("TCG kernel params %q lack tsc_early_khz", joined)
	}
	if k, _ := ResolveAccel("kvm", "/nonexistent/kvm", time.Millisecond); len(k.KernelParams) != 0 {
		t.Errorf("KVM kernel params = %q, want none", k.KernelParams)
	}
}
