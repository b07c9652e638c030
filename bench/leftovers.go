package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// leftovers lists what is still running or mounted under dir after waiting
// up to patience for it to go: processes whose command line names it (QEMU,
// monitors, proxies) and mounts.
func leftovers(dir string, patience time.Duration) []string {
	deadline := time.Now().Add(patience)
	for {
		l := leftoversNow(dir)
		if len(l) == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leftoversNow(dir string) []string {
	var out []string
	self := strconv.Itoa(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid := filepath.Base(filepath.Dir(p))
		b, err := os.ReadFile(p)
		if err != nil || pid == self || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		out = append(out, fmt.Sprintf("process %s (%s)", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, "mount "+l)
		}
	}
	return out
}
