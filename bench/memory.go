package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hull-runtime/hull/ocicli"
)

const (
	// idleSettle is how long a sandbox idles after start before its PSS
	// is read.
	idleSettle = 3 * time.Second
	// manySandboxes is the size of the crowd whose PSS is read together.
	manySandboxes = 10
	// memGuestMiB is the guest memory of the sandboxes measured.
	memGuestMiB = 512
)

// sandboxPSS is the host memory of one sandbox's processes, in MiB.
type sandboxPSS struct {
	qemu, monitor, proxy float64
	// qemuRAM, qemuTCG and qemuOther split QEMU's share: the guest RAM
	// block, the TCG translation buffer, the rest (QEMU's own heap,
	// binary and libraries).
	qemuRAM, qemuTCG, qemuOther float64
}

func (p sandboxPSS) total() float64 { return p.qemu + p.monitor + p.proxy }

// memory reads the PSS of idle sandboxes started with the hull CLI (512 MiB
// guests): one at a time n times, then manySandboxes at once. It also times
// create+start and delete --force, the user-visible cost of a sandbox.
func (b *bench) memory(ctx context.Context) error {
	dir := filepath.Join(b.tmp, "mem")
	h, err := b.hull(dir, memGuestMiB)
	if err != nil {
		return err
	}
	bundle := filepath.Join(dir, "bundle")
	if err := writeBundle(bundle, "sleep", "600"); err != nil {
		return err
	}
	var live []string
	defer func() {
		for _, id := range live {
			_ = h.run(context.WithoutCancel(ctx), "delete", "--force", id)
		}
	}()
	up := func(id string) error {
		t0 := time.Now()
		live = append(live, id)
		if err := h.detached(ctx, "create", "--bundle", bundle, "--pid-file", filepath.Join(dir, id+".pid"), id); err != nil {
			return err
		}
		if err := h.run(ctx, "start", id); err != nil {
			return err
		}
		b.s.Add("cli_create_start", ms(time.Since(t0)))
		return nil
	}
	down := func() error {
		for _, id := range live {
			t0 := time.Now()
			if err := h.run(ctx, "delete", "--force", id); err != nil {
				return err
			}
			b.s.Add("cli_delete_force", ms(time.Since(t0)))
		}
		live = nil
		return nil
	}

	for i := range b.n {
		id := fmt.Sprintf("m%d", i)
		if err := up(id); err != nil {
			return err
		}
		time.Sleep(idleSettle)
		p, err := readSandboxPSS(h.root, id, filepath.Join(dir, id+".pid"))
		if err != nil {
			return err
		}
		b.s.Add("pss_one_total", p.total())
		b.s.Add("pss_one_qemu", p.qemu)
		b.s.Add("pss_one_monitor", p.monitor)
		b.s.Add("pss_one_proxy", p.proxy)
		b.s.Add("pss_one_qemu_ram", p.qemuRAM)
		b.s.Add("pss_one_qemu_tcg", p.qemuTCG)
		b.s.Add("pss_one_qemu_other", p.qemuOther)
		if err := down(); err != nil {
			return err
		}
	}

	for i := range manySandboxes {
		if err := up(fmt.Sprintf("many%d", i)); err != nil {
			return err
		}
	}
	time.Sleep(idleSettle)
	var sum float64
	for _, id := range live {
		p, err := readSandboxPSS(h.root, id, filepath.Join(dir, id+".pid"))
		if err != nil {
			return err
		}
		sum += p.total()
		b.s.Add("pss_many_each", p.total())
	}
	b.s.Add("pss_many_total", sum)
	log.Printf("  %d idle sandboxes: %.0f MiB PSS in all", manySandboxes, sum)
	if err := down(); err != nil {
		return err
	}
	b.note("Memory: PSS (/proc/PID/smaps_rollup) of QEMU + monitor + proxy of a sandbox with one `sleep 600` container "+
		"created and started by the hull CLI (512 MiB guest), read %s after start; one at a time (n repetitions), then %d at once, created in sequence.",
		idleSettle, manySandboxes)
	return nil
}

// readSandboxPSS finds the processes of sandbox id (hull's --root is root)
// from what its monitor published and the proxy's pid file.
func readSandboxPSS(root, id, pidFile string) (sandboxPSS, error) {
	info, err := ocicli.ReadSandboxInfo(&ocicli.Store{Root: root}, id)
	if err != nil {
		return sandboxPSS{}, fmt.Errorf("sandbox %s: %w", id, err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return sandboxPSS{}, err
	}
	proxy, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return sandboxPSS{}, fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	var p sandboxPSS
	for _, x := range []struct {
		pid int
		dst *float64
	}{{info.QEMUPID, &p.qemu}, {info.MonitorPID, &p.monitor}, {proxy, &p.proxy}} {
		if *x.dst, err = pssMiB(x.pid); err != nil {
			return sandboxPSS{}, fmt.Errorf("sandbox %s: %w", id, err)
		}
	}
	if p.qemuRAM, p.qemuTCG, err = qemuPSS(info.QEMUPID, memGuestMiB); err != nil {
		return sandboxPSS{}, fmt.Errorf("sandbox %s: %w", id, err)
	}
	p.qemuOther = p.qemu - p.qemuRAM - p.qemuTCG
	return p, nil
}

// pssMiB reads a process's proportional set size.
func pssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "Pss:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// qemuPSS splits a QEMU's PSS by mapping: the anonymous mapping of the guest
// RAM (at least ramMiB long, read-write) and TCG's translation buffer (the
// anonymous read-write-execute one), in MiB.
func qemuPSS(pid, ramMiB int) (ram, tcg float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var cur *float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			anon := len(fields) == 5
			cur = nil
			switch {
			case err1 != nil || err2 != nil || !anon:
			case strings.HasPrefix(fields[1], "rwx"):
				cur = &tcg
			case strings.HasPrefix(fields[1], "rw") && end-start >= uint64(ramMiB)<<20:
				cur = &ram
			}
			continue
		}
		if fields[0] == "Pss:" && cur != nil && len(fields) >= 2 {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return 0, 0, err
			}
			*cur += kb / 1024
		}
	}
	return ram, tcg, sc.Err()
}
