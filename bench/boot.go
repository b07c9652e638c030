package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"time"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
	"github.com/hull-runtime/hull/tests/fixture"
)

// healthCalls is how many agent round trips one repetition times.
const healthCalls = 1000

// Start-up steps in the order they happen, as recorded in the samples
// ("step_<name>") and drawn in the chart.
var startupSteps = []struct{ key, label string }{
	{"share", "share dir mounts"},
	{"virtiofsd", "virtiofsd spawn"},
	{"accel", "accelerator probe"},
	{"qemu", "QEMU spawn -> QMP ready"},
	{"agent", "QMP ready -> agent ready"},
	{"create", "container create"},
	{"start", "container start"},
	{"wait", "started -> exited (true)"},
	{"remove", "container remove (cleaned)"},
	{"stop", "sandbox stop"},
}

// boot measures, interleaved in each repetition so that load from other
// work on the machine hits all alike: raw boots of the tuned kernel (bare,
// and with hull's devices), of the generic kernel, then a hull sandbox on
// each kernel; in the tuned one a container runs `true` and the agent
// answers healthCalls Health calls.
func (b *bench) boot(ctx context.Context) error {
	bundle := filepath.Join(b.tmp, "bundle-true")
	if err := writeBundle(bundle, "true"); err != nil {
		return err
	}
	raws := []struct {
		key  string
		boot rawBoot
	}{
		{"raw_boot_tuned", rawBoot{qemu: b.qemu, kernel: b.file("vmlinux-hull"), initrd: b.poweroffInitrd, guest: b.guest}},
		{"raw_boot_tuned_devices", rawBoot{qemu: b.qemu, kernel: b.file("vmlinux-hull"), initrd: b.poweroffInitrd, guest: b.guest, devices: true}},
		{"raw_boot_generic", rawBoot{qemu: b.qemu, kernel: b.file(genericKernel), initrd: b.poweroffInitrd, guest: b.guest}},
	}
	for i := range b.n {
		for _, r := range raws {
			d, err := r.boot.run(ctx, filepath.Join(b.tmp, "raw"))
			if err != nil {
				return err
			}
			b.s.Add(r.key, ms(d))
		}
		if err := b.tunedSandbox(ctx, i, bundle); err != nil {
			return err
		}
		ready, err := b.startStop(ctx, fmt.Sprintf("gen%d", i), b.sandboxConfig(genericKernel, "initrd-generic.img"))
		if err != nil {
			return err
		}
		b.s.Add("ready_generic", ms(ready))
		// The same sandbox with its share over each file system.
		for _, fs := range sharedFSes {
			cfg := b.sandboxConfig(tunedKernel, tunedImage)
			cfg.SharedFS.Type = fs.typ
			ready, err := b.startStop(ctx, fmt.Sprintf("%s%d", fs.name, i), cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", fs.name, err)
			}
			b.s.Add("ready_tuned_"+fs.name, ms(ready))
		}
		log.Printf("  rep %d: raw %.0f ms, ready tuned %.0f ms, ready generic %.0f ms", i+1,
			b.s.vals["raw_boot_tuned"][i], b.s.vals["ready_tuned"][i], ms(ready))
	}
	if err := b.timeline(ctx); err != nil {
		return err
	}
	b.note("Raw boot: QEMU spawn to exit, `-kernel` + an initrd whose /init (a static Go program) ends the VM at once (a reboot, which -no-reboot turns into QEMU's exit, as hull's agent does); "+
		"%s, tcg (tb-size %d MiB), `-cpu max`, 512 MiB, `%s`. raw_boot_tuned_devices adds the devices hull attaches (QMP, rng, virtio-serial, 9p), "+
		"rendered by hypervisor.Config.Args.", b.guest.machine, b.guest.tbSize, b.guest.params)
	b.note("Sandbox ready: wall time of pod.StartSandbox (accel tcg, 512 MiB, hull's default shared_fs %s; the _9p and _virtiofs rows "+
		"boot the same sandbox with its share over each, then stop it) until the agent answers Health; "+
		"steps from Sandbox.Timings. Container steps: Guest.CreateContainer, StartContainer, Relay (until exit), RemoveContainer; then Sandbox.Stop. "+
		"Agent RTT: median of %d Health calls over Sandbox.Agent() per repetition.", pod.DefaultConfig().SharedFS.Type, healthCalls)
	return nil
}

// sandboxConfig is hull's default configuration with the built guest:
// image is an initrd (*.img) or the guest root directory.
func (b *bench) sandboxConfig(kernel, image string) pod.Config {
	cfg := pod.DefaultConfig()
	cfg.Hypervisor.Accel = "tcg"
	cfg.Hypervisor.Kernel = b.file(kernel)
	if strings.HasSuffix(image, ".img") {
		cfg.Hypervisor.GuestRoot, cfg.Hypervisor.Initrd = "", b.file(image)
	} else {
		cfg.Hypervisor.GuestRoot = b.file(image)
	}
	if kernel == genericKernel {
		// Debian's kernel cannot find microvm's devices (see README).
		cfg.Hypervisor.Machine = "q35"
	}
	return cfg
}

const (
	genericKernel = "vmlinuz-generic"
	tunedKernel   = "vmlinux-hull"
	// tunedImage is the tuned guest as hull boots it by default.
	tunedImage = "guest-root"
)

// startStop boots a sandbox of cfg and stops it; it returns the time to
// ready.
func (b *bench) startStop(ctx context.Context, id string, cfg pod.Config) (time.Duration, error) {
	t0 := time.Now()
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: id, Dir: filepath.Join(b.tmp, id), Config: cfg})
	if err != nil {
		return 0, err
	}
	ready := time.Since(t0)
	return ready, sb.Stop(context.WithoutCancel(ctx))
}

func (b *bench) tunedSandbox(ctx context.Context, i int, bundle string) (err error) {
	id := fmt.Sprintf("tuned%d", i)
	t0 := time.Now()
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: id, Dir: filepath.Join(b.tmp, id), Config: b.sandboxConfig(tunedKernel, tunedImage)})
	if err != nil {
		return err
	}
	b.s.Add("ready_tuned", ms(time.Since(t0)))
	stopped := false
	defer func() {
		if !stopped {
			_ = sb.Stop(context.WithoutCancel(ctx))
		}
	}()
	for _, st := range sb.Timings {
		b.s.Add("step_"+st.Name, ms(st.Took))
	}

	g := sb.Guest()
	cid := "true"
	lap := time.Now()
	split := func(key string) {
		now := time.Now()
		b.s.Add("step_"+key, ms(now.Sub(lap)))
		lap = now
	}
	runStart := lap
	if err := g.CreateContainer(ctx, cid, bundle, fixture.Spec("true"), false); err != nil {
		return fmt.Errorf("create container %s: %w", cid, err)
	}
	split("create")
	if err := g.StartContainer(ctx, cid); err != nil {
		return fmt.Errorf("start container %s: %w", cid, err)
	}
	split("start")
	status, err := pod.Relay(ctx, g.Agent, cid, "", pod.Stdio{})
	if err != nil {
		return err
	}
	if status != 0 {
		return fmt.Errorf("container true exited %d", status)
	}
	split("wait")
	if err := g.RemoveContainer(ctx, cid, true); err != nil {
		return fmt.Errorf("remove container %s: %w", cid, err)
	}
	split("remove")
	b.s.Add("container_run_true", ms(time.Since(runStart)))

	per := make([]float64, 0, healthCalls)
	for range healthCalls {
		t := time.Now()
		if _, err := sb.Agent().Health(ctx, &agentproto.HealthRequest{}); err != nil {
			return fmt.Errorf("health: %w", err)
		}
		per = append(per, ms(time.Since(t)))
	}
	b.s.Add("agent_health_rtt", summarize(per).Med)

	lap = time.Now()
	stopped = true
	if err := sb.Stop(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	split("stop")
	return nil
}
