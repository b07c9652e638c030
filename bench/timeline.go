package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/hull-runtime/hull/pod"
)

// verboseParams make the kernel print timestamped messages. Serial output
// is slow under TCG, so a verbose boot only shows where the time goes; the
// timed boots stay quiet.
const verboseParams = "loglevel=7 printk.time=1"

var (
	initLine     = regexp.MustCompile(`\[\s*([0-9.]+)\] Run /init as init process`)
	poweroffLine = regexp.MustCompile(`\[\s*([0-9.]+)\] reboot: (Power down|Restarting system)`)
)

// kernelStamp returns the kernel timestamp of the first line re matches.
func kernelStamp(console []byte, re *regexp.Regexp) (time.Duration, error) {
	m := re.FindSubmatch(console)
	if m == nil {
		return 0, fmt.Errorf("no %q in console %q", re, tail(console, 256))
	}
	s, err := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(s * float64(time.Second)), err
}

// timeline boots the tuned kernel once raw and once as a sandbox with
// timestamped kernel messages, to split the boot into what happens before
// the kernel's clock starts (QEMU, firmware, decompression), the kernel up
// to /init, and what /init does.
func (b *bench) timeline(ctx context.Context) error {
	var console []byte
	raw := rawBoot{qemu: b.qemu, kernel: b.file("vmlinux-hull"), initrd: b.poweroffInitrd, guest: b.guest, extraParams: verboseParams, console: &console}
	total, err := raw.run(ctx, filepath.Join(b.tmp, "raw-verbose"))
	if err != nil {
		return err
	}
	toInit, err := kernelStamp(console, initLine)
	if err != nil {
		return err
	}
	off, err := kernelStamp(console, poweroffLine)
	if err != nil {
		return err
	}
	b.s.Add("tl_raw_total", ms(total))
	b.s.Add("tl_raw_init", ms(toInit))
	b.s.Add("tl_raw_initrun", ms(off-toInit))
	b.s.Add("tl_raw_outside", ms(total-off))

	cfg := b.sandboxConfig(tunedKernel, tunedImage)
	cfg.Hypervisor.KernelParams = "loglevel=7 printk.time=1"
	t0 := time.Now()
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: "verbose", Dir: filepath.Join(b.tmp, "verbose"), Config: cfg})
	if err != nil {
		return err
	}
	ready := time.Since(t0)
	console, _ = os.ReadFile(filepath.Join(sb.Dir, "console.log"))
	if err := sb.Stop(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	sbInit, err := kernelStamp(console, initLine)
	if err != nil {
		return err
	}
	b.s.Add("tl_sb_ready", ms(ready))
	b.s.Add("tl_sb_init", ms(sbInit))
	b.s.Add("tl_sb_rest", ms(ready-sbInit))
	b.note("Guest timeline: one extra raw boot and one extra sandbox boot per run with `loglevel=7 printk.time=1` instead of `quiet` " +
		"(slower: serial output under TCG); kernel timestamps of \"Run /init\" and \"reboot: Restarting system\" split the wall time. On microvm the kernel clock stands still until the TSC takes over, so the first phase is the kernel's own account.")
	return nil
}

func (b *bench) timelineTable() string {
	if b.s.Stat("tl_raw_total").N == 0 {
		return ""
	}
	v := func(k string) string { return num(b.s.Stat(k).Med) }
	return "| phase | raw boot (init ends the VM) | hull sandbox (agent) |\n| --- | --- | --- |\n" +
		"| kernel clock 0 -> `Run /init` (incl. initramfs unpack) | " + v("tl_raw_init") + " | " + v("tl_sb_init") + " |\n" +
		"| /init runs until it ends the VM | " + v("tl_raw_initrun") + " | |\n" +
		"| outside the kernel clock: QEMU start, firmware, decompression, QEMU exit | " + v("tl_raw_outside") + " | |\n" +
		"| rest: before the kernel clock + /init (agent) to ready | | " + v("tl_sb_rest") + " |\n" +
		"| total (wall) | " + v("tl_raw_total") + " | " + v("tl_sb_ready") + " |\n"
}
