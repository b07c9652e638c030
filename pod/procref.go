package pod

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ProcessRef names a host process robustly against PID reuse.
type ProcessRef struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// Alive reports whether the referenced process still runs (and is not a
// zombie or a newer process that reused the PID).
func (p ProcessRef) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, state, err := procStat(p.PID)
	if err != nil || state == "Z" || state == "X" {
		return false
	}
	return st == p.StartTime
}

// Kill sends SIGKILL to the referenced process if it is still that process.
// It never signals a PID below 1: kill(-1) would end every process.
func (p ProcessRef) Kill() {
	if p.PID > 1 && p.Alive() {
		_ = unix.Kill(p.PID, unix.SIGKILL)
	}
}

// RefOf returns a ProcessRef for a running PID.
func RefOf(pid int) (ProcessRef, error) {
	st, _, err := procStat(pid)
	if err != nil {
		return ProcessRef{}, err
	}
	return ProcessRef{PID: pid, StartTime: st}, nil
}

// procStat returns a process's start time (field 22) and state (field 3).
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0], err
}

// WaitGone waits up to d for the referenced process to end.
func WaitGone(p ProcessRef, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.Alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
