// Command bench measures hull's start-up time, host CLI latency, memory per
// sandbox, sandboxes cloned from a VM template, a CRI pod's start-up and
// memory through containerd, and shared
// file system (9p, virtio-fs) throughput against floors measured in the same
// run (a raw QEMU boot of the same kernel, runc, the hull CLI behind
// containerd's runc shim, the host file system), and writes
// results/latest.{md,csv} and the start-up chart results/startup.png.
//
// It needs root, QEMU, runc, containerd, crictl and the images in build/
// (`make`). Run it with `make bench`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hull-runtime/hull/tests/fixture"
)

// bench is one run: its settings and everything measured so far.
type bench struct {
	n     int
	build string
	tmp   string
	qemu  string
	runc  string
	// poweroffInitrd is the floor guest's initrd (its /init ends the VM).
	poweroffInitrd string
	// guest is the machine and kernel parameters every raw boot uses.
	guest floorGuest
	s     *Samples
	// notes explain how measures were taken; they go to latest.md.
	notes []string
}

var allCases = []string{"boot", "cli", "memory", "template", "pod", "fs"}

func main() {
	out := flag.String("out", "results", "directory for latest.md, latest.csv and startup.png")
	n := flag.Int("n", 5, "repetitions of each case")
	build := flag.String("build", "", "directory with hull, vmlinuz-*, initrd-*.img (default: build or ../build)")
	cases := flag.String("cases", strings.Join(allCases, ","), "comma-separated cases to run: "+strings.Join(allCases, ","))
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	if err := run(*out, *n, *build, strings.Split(*cases, ",")); err != nil {
		log.Fatal(err)
	}
}

func run(out string, n int, build string, cases []string) error {
	if n < 1 {
		return errors.New("-n must be at least 1")
	}
	for _, c := range cases {
		if !slices.Contains(allCases, c) {
			return fmt.Errorf("unknown case %q (want %s)", c, strings.Join(allCases, ","))
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("bench needs root (QEMU, bind mounts, runc)")
	}
	b := &bench{n: n, qemu: "/usr/bin/qemu-system-x86_64", runc: "/usr/sbin/runc", s: newSamples()}
	var err error
	if b.build, err = findBuild(build); err != nil {
		return err
	}
	// Short: unix socket paths of sandboxes live under it.
	if b.tmp, err = os.MkdirTemp("", "hull-bench-"); err != nil {
		return err
	}
	defer func() {
		// Never remove through a mount that is still there.
		if l := fixture.Leftovers(b.tmp, 5*time.Second); len(l) > 0 {
			log.Printf("keeping %s, still in use: %s", b.tmp, strings.Join(l, "; "))
			return
		}
		os.RemoveAll(b.tmp)
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	if b.poweroffInitrd, err = buildPoweroffInitrd(ctx, b.tmp); err != nil {
		return err
	}
	if b.guest, err = defaultFloorGuest(); err != nil {
		return err
	}
	steps := map[string]func(context.Context) error{
		"boot": b.boot, "cli": b.cli, "memory": b.memory, "template": b.templated, "pod": b.pods, "fs": b.sharedFS,
	}
	for _, c := range allCases {
		if !slices.Contains(cases, c) {
			continue
		}
		log.Printf("case %s (n=%d)", c, n)
		if err := steps[c](ctx); err != nil {
			return fmt.Errorf("case %s: %w", c, err)
		}
	}
	if l := fixture.Leftovers(b.tmp, 5*time.Second); len(l) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(l, "; "))
	}
	return b.report(out, time.Since(began))
}

// findBuild locates the build directory.
func findBuild(flagged string) (string, error) {
	cands := []string{"build", "../build"}
	if flagged != "" {
		cands = []string{flagged}
	}
	for _, c := range cands {
		if _, err := os.Stat(filepath.Join(c, "vmlinux-hull")); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no build directory with vmlinux-hull among %v: run make", cands)
}

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func (b *bench) file(name string) string { return filepath.Join(b.build, name) }
