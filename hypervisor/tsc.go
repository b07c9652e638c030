package hypervisor

import (
	"errors"
	"fmt"
	"time"
)

// Under TCG the guest's RDTSC reads the host's TSC, so the guest's TSC runs
// at the host's rate. A Linux guest that cannot calibrate it against the PIT
// (it never can under TCG) falls back to an HPET loop of ~100 ms, then
// spends another ~100 ms calibrating its local APIC timer. Telling it the
// rate (tsc_early_khz) skips the first; it still refines the value against
// the HPET a second after boot, and keeps the refinement when it is within
// 1%. Letting the PIT drive the tick (noapictimer) skips the second; QEMU
// emulates the PIT as cheaply as the local APIC timer.

// tscSample is the TSC read next to the monotonic clock; spread is how many
// ticks the pair took to read, the uncertainty of the sample.
type tscSample struct {
	tsc, spread uint64
	at          time.Time
}

// sampleTSC reads the TSC and the clock several times and keeps the pair
// with the tightest bracket, so a preemption between the reads cannot skew
// the measurement.
func sampleTSC() tscSample {
	best := tscSample{spread: ^uint64(0)}
	for i := 0; i < 16; i++ {
		a := rdtsc()
		now := time.Now()
		b := rdtsc()
		if b >= a && b-a < best.spread {
			best = tscSample{tsc: a + (b-a)/2, spread: b - a, at: now}
		}
	}
	return best
}

// HostTSCKHz measures the host's TSC rate over window.
func HostTSCKHz(window time.Duration) (uint64, error) {
	if !tscSupported {
		return 0, errors.New("tsc: not an x86-64 host")
	}
	start := sampleTSC()
	time.Sleep(window)
	end := sampleTSC()
	ns := end.at.Sub(start.at).Nanoseconds()
	if ns <= 0 || end.tsc <= start.tsc {
		return 0, fmt.Errorf("tsc: did not advance over %s", window)
	}
	khz := (end.tsc - start.tsc) * 1_000_000 / uint64(ns)
	// Anything outside 100 MHz–10 GHz is not a TSC worth trusting.
	if khz < 100_000 || khz > 10_000_000 {
		return 0, fmt.Errorf("tsc: measured %d kHz, out of range", khz)
	}
	return khz, nil
}

// tscWindow is how long HostTSCKHz measures for a TCG guest: an error of a
// few hundred nanoseconds in the samples is well under 0.1% of it.
const tscWindow = 5 * time.Millisecond

// tcgKernelParams are the guest kernel parameters that skip timer
// calibrations a TCG guest cannot do quickly. When the TSC cannot be
// measured the guest calibrates it itself, slowly but correctly.
func tcgKernelParams() []string {
	params := []string{"noapictimer"}
	if khz, err := HostTSCKHz(tscWindow); err == nil {
		params = append(params, fmt.Sprintf("tsc_early_khz=%d", khz))
	}
	return params
}
