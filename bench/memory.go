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
	"github.com/hull-runtime/hull/pod"
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
	// virtiofsd is the PSS of the virtio-fs daemon and its sandboxed
	// child (0 for a 9p share).
	virtiofsd float64
	// qemuRAM, qemuTCG and qemuOther split QEMU's share: the guest RAM
	// block, the TCG translation buffer, the rest (QEMU's own heap,
	// binary and libraries).
	qemuRAM, qemuTCG, qemuOther float64
}

func (p sandboxPSS) total() float64 { return p.qemu + p.monitor + p.proxy + p.virtiofsd }

// memory reads the PSS of idle sandboxes started with the hull CLI (512 MiB
// guests): one at a time n times over each shared file system, then
// manySandboxes at once with hull's defaults. It also times create+start
// and delete --force, the user-visible cost of a sandbox.
func (b *bench) memory(ctx context.Context) error {
	bundle := filepath.Join(b.tmp, "mem-bundle")
	if err := writeBundle(bundle, "sleep", "600"); err != nil {
		return err
	}
	defaultFS := pod.DefaultConfig().SharedFS.Type
	fleets := map[string]*fleet{}
	for _, fs := range sharedFSes {
		dir := filepath.Join(b.tmp, "mem-"+fs.name)
		h, err := b.hull(dir, memGuestMiB, fs.typ)
		if err != nil {
			return err
		}
		f := &fleet{b: b, h: h, dir: dir, bundle: bundle}
		defer f.cleanup(context.WithoutCancel(ctx))
		fleets[fs.name] = f
	}

	for i := range b.n {
		for _, fs := range sharedFSes {
			f := fleets[fs.name]
			id := fmt.Sprintf("m%d", i)
			if err := f.up(ctx, id); err != nil {
				return err
			}
			time.Sleep(idleSettle)
			p, err := f.pss(id)
			if err != nil {
				return err
			}
			b.s.Add("pss_"+fs.name+"_total", p.total())
			if fs.typ == defaultFS {
				b.s.Add("pss_one_total", p.total())
				b.s.Add("pss_one_qemu", p.qemu)
				b.s.Add("pss_one_monitor", p.monitor)
				b.s.Add("pss_one_proxy", p.proxy)
				b.s.Add("pss_one_virtiofsd", p.virtiofsd)
				b.s.Add("pss_one_qemu_ram", p.qemuRAM)
				b.s.Add("pss_one_qemu_tcg", p.qemuTCG)
				b.s.Add("pss_one_qemu_other", p.qemuOther)
			}
			if err := f.down(ctx); err != nil {
				return err
			}
		}
	}

	var many *fleet
	for _, fs := range sharedFSes {
		if fs.typ == defaultFS {
			many = fleets[fs.name]
		}
	}
	for i := range manySandboxes {
		if err := many.up(ctx, fmt.Sprintf("many%d", i)); err != nil {
			return err
		}
	}
	time.Sleep(idleSettle)
	var sum float64
	for _, id := range many.live {
		p, err := many.pss(id)
		if err != nil {
			return err
		}
		sum += p.total()
		b.s.Add("pss_many_each", p.total())
	}
	b.s.Add("pss_many_total", sum)
	log.Printf("  %d idle sandboxes: %.0f MiB PSS in all", manySandboxes, sum)
	if err := many.down(ctx); err != nil {
		return err
	}
	b.note("Memory: PSS (/proc/PID/smaps_rollup) of QEMU + monitor + proxy (+ virtiofsd and its sandboxed child over virtio-fs) of a sandbox with one `sleep 600` container "+
		"created and started by the hull CLI (512 MiB guest), read %s after start; one at a time (n repetitions over each shared_fs; idle_pss_mib and the table by process "+
		"are hull's default, %s), then %d at once with the default, created in sequence. Over virtio-fs guest RAM is a shared memfd that virtiofsd maps too: "+
		"the pages both touch count half to each.",
		idleSettle, defaultFS, manySandboxes)
	return nil
}

// fleet is the sandboxes one hull CLI configuration runs, each with one
// container of bundle.
type fleet struct {
	b           *bench
	h           runtimeCLI
	dir, bundle string
	live        []string
	// startKey names the samples of create+start ("cli_create_start"
	// when empty).
	startKey string
}

// up creates and starts container id, its own sandbox.
func (f *fleet) up(ctx context.Context, id string) error {
	t0 := time.Now()
	f.live = append(f.live, id)
	if err := f.h.detached(ctx, "create", "--bundle", f.bundle, "--pid-file", filepath.Join(f.dir, id+".pid"), id); err != nil {
		return err
	}
	if err := f.h.run(ctx, "start", id); err != nil {
		return err
	}
	key := f.startKey
	if key == "" {
		key = "cli_create_start"
	}
	f.b.s.Add(key, ms(time.Since(t0)))
	return nil
}

// down deletes every live container.
func (f *fleet) down(ctx context.Context) error {
	for _, id := range f.live {
		t0 := time.Now()
		if err := f.h.run(ctx, "delete", "--force", id); err != nil {
			return err
		}
		f.b.s.Add("cli_delete_force", ms(time.Since(t0)))
	}
	f.live = nil
	return nil
}

// cleanup deletes what an error left running.
func (f *fleet) cleanup(ctx context.Context) {
	for _, id := range f.live {
		_ = f.h.run(ctx, "delete", "--force", id)
	}
}

func (f *fleet) pss(id string) (sandboxPSS, error) {
	return readSandboxPSS(f.h.root, id, filepath.Join(f.dir, id+".pid"))
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
	if info.Virtiofsd != nil {
		if p.virtiofsd, err = treePSSMiB(info.Virtiofsd.PID); err != nil {
			return sandboxPSS{}, fmt.Errorf("sandbox %s: virtiofsd: %w", id, err)
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

// treePSSMiB is the PSS of a process and its children.
func treePSSMiB(pid int) (float64, error) {
	sum, err := pssMiB(pid)
	if err != nil {
		return 0, err
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, err
	}
	for _, c := range strings.Fields(string(children)) {
		child, err := strconv.Atoi(c)
		if err != nil {
			return 0, err
		}
		v, err := pssMiB(child)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// qemuPSS splits a QEMU's PSS by mapping: the mapping of the guest RAM
// (anonymous, a memfd when shared with virtiofsd, or a VM template's RAM
// file; at least ramMiB long, read-write) and TCG's translation buffer (the
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
			// Guest RAM shared with virtiofsd is a memfd; a clone's is
			// the RAM file of its VM template (<factory>/t-<ns>/memory).
			memfd := len(fields) > 5 && strings.HasPrefix(fields[5], "/memfd:")
			template := len(fields) > 5 && filepath.Base(fields[5]) == "memory" && strings.HasPrefix(filepath.Base(filepath.Dir(fields[5])), "t-")
			cur = nil
			switch {
			case err1 != nil || err2 != nil || !(anon || memfd || template):
			case anon && strings.HasPrefix(fields[1], "rwx"):
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
