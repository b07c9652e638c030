package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/hull-runtime/hull/ocicli"
	"github.com/hull-runtime/hull/pod"
)

// Start-up steps of a sandbox cloned from a VM template, as its
// Sandbox.Timings name them ("tstep_<name>" in the samples).
var templatedSteps = []struct{ key, label string }{
	{"share", "share dir mounts"},
	{"accel", "accelerator probe"},
	{"qemu", "QEMU spawn -> QMP ready"},
	{"restore", "state load + resume"},
	{"agent", "resumed -> agent ready"},
	{"clone start", "StartClone: RNG reseed, clock"},
}

// templateInitrd is the guest image of a template: its root must be an
// initrd (a 9p guest root cannot be saved).
const templateInitrd = "initrd-hull.img"

// templated measures VM templating, interleaved with cold boots of the same
// configuration in each repetition: the template's init, a sandbox started
// as its clone, the same sandbox booted cold; then the PSS of
// manySandboxes idle clones started by the hull CLI.
func (b *bench) templated(ctx context.Context) error {
	cfg := b.templateConfig(filepath.Join(b.tmp, "factory"))
	defer func() {
		if err := pod.DestroyTemplate(cfg); err != nil {
			log.Printf("destroy template: %v", err)
		}
	}()
	cold := cfg
	cold.Factory.Template = false
	for i := range b.n {
		t0 := time.Now()
		if _, err := pod.InitTemplate(ctx, cfg, nil); err != nil {
			return err
		}
		b.s.Add("template_init", ms(time.Since(t0)))
		id := fmt.Sprintf("clone%d", i)
		t0 = time.Now()
		sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: id, Dir: filepath.Join(b.tmp, id), Config: cfg})
		if err != nil {
			return err
		}
		ready := time.Since(t0)
		cloned := sb.Template != ""
		for _, st := range sb.Timings {
			b.s.Add("tstep_"+st.Name, ms(st.Took))
		}
		if err := sb.Stop(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		if !cloned {
			return errors.New("the sandbox booted cold although a template of its shape was just made")
		}
		b.s.Add("ready_templated", ms(ready))
		coldReady, err := b.startStop(ctx, fmt.Sprintf("cold%d", i), cold)
		if err != nil {
			return err
		}
		b.s.Add("ready_cold_template_config", ms(coldReady))
		log.Printf("  rep %d: template init %.0f ms, ready templated %.0f ms, cold %.0f ms", i+1,
			b.s.vals["template_init"][i], ms(ready), ms(coldReady))
	}
	// Clones with the configuration's translation buffer, then with a
	// small one (factory.tcg_tb_size): memory against start-up time.
	if err := b.templatedPSS(ctx, "templated", 0); err != nil {
		return err
	}
	if err := b.templatedPSS(ctx, "templated_tb8", 8); err != nil {
		return err
	}
	b.note("Templates: `pod.InitTemplate` (template_init_ms: QEMU spawn to the saved state, then QEMU's exit) and pod.StartSandbox of the configuration templates need: "+
		"the tuned kernel, the guest as an initrd (%s), the share over virtio-9p, 512 MiB, tcg; "+
		"ready_templated when the sandbox starts as a clone, and the same configuration booted cold (templated_ready_vs_cold_ready's floor) in each repetition. "+
		"idle_pss_mib_templated_each_of_10: %d idle clones with a `sleep 600` container, started by the hull CLI (`hull factory init` first), "+
		"PSS as for the cold rows; the template's RAM file, on tmpfs, counts to the clones that map its pages. "+
		"The _tb8 rows: the same with the clones' translation buffer at 8 MiB (factory.tcg_tb_size = 8), "+
		"and their `hull create`+`start` against the default's (templated_create_start).", templateInitrd, manySandboxes)
	return nil
}

// templateConfig is the sandbox configuration a template needs, with the
// template on, in the factory directory dir.
func (b *bench) templateConfig(dir string) pod.Config {
	cfg := b.sandboxConfig(tunedKernel, templateInitrd)
	cfg.SharedFS.Type = pod.SharedFS9P
	// The bench's sandboxes have no network, as its cold ones.
	cfg.Factory = pod.FactoryConfig{Template: true, Dir: dir, NICs: 0}
	return cfg
}

// templatedPSS reads the PSS of manySandboxes idle clones of a template
// that `hull factory init` made, into samples named after key; tbMiB, when
// not 0, is the clones' factory.tcg_tb_size.
func (b *bench) templatedPSS(ctx context.Context, key string, tbMiB int) error {
	dir := filepath.Join(b.tmp, "mem-"+key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	factory := filepath.Join(dir, "factory")
	conf := filepath.Join(dir, "hull.toml")
	toml := fmt.Sprintf("[hypervisor]\naccel = \"tcg\"\nkernel = %q\ninitrd = %q\ndefault_memory = %d\n\n[shared_fs]\ntype = %q\n\n[factory]\ntemplate = true\ndir = %q\nnics = 0\ntcg_tb_size = %d\n",
		b.file(tunedKernel), b.file(templateInitrd), memGuestMiB, pod.SharedFS9P, factory, tbMiB)
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		return err
	}
	h := runtimeCLI{bin: b.file("hull"), root: filepath.Join(dir, "root"), env: []string{"HULL_CONFIG=" + conf}, log: filepath.Join(dir, "hull.log")}
	if err := h.run(ctx, "factory", "init"); err != nil {
		return err
	}
	defer func() {
		if err := h.run(context.WithoutCancel(ctx), "factory", "destroy"); err != nil {
			log.Printf("hull factory destroy: %v", err)
		}
	}()
	bundle := filepath.Join(dir, "bundle")
	if err := writeBundle(bundle, "sleep", "600"); err != nil {
		return err
	}
	f := &fleet{b: b, h: h, dir: dir, bundle: bundle, startKey: key + "_create_start"}
	defer f.cleanup(context.WithoutCancel(ctx))
	for i := range manySandboxes {
		id := fmt.Sprintf("clone%d", i)
		if err := f.up(ctx, id); err != nil {
			return err
		}
		info, err := ocicli.ReadSandboxInfo(&ocicli.Store{Root: h.root}, id)
		if err != nil {
			return err
		}
		if info.Template == "" {
			return fmt.Errorf("sandbox %s booted cold although a template of its shape is there (see %s)", id, h.log)
		}
	}
	time.Sleep(idleSettle)
	var sum float64
	for _, id := range f.live {
		p, err := f.pss(id)
		if err != nil {
			return err
		}
		sum += p.total()
		for _, v := range []struct {
			part string
			mib  float64
		}{{"each", p.total()}, {"qemu", p.qemu}, {"qemu_ram", p.qemuRAM}, {"qemu_tcg", p.qemuTCG},
			{"qemu_other", p.qemuOther}, {"monitor", p.monitor}, {"proxy", p.proxy}} {
			b.s.Add("pss_"+key+"_"+v.part, v.mib)
		}
	}
	b.s.Add("pss_"+key+"_total", sum)
	log.Printf("  %d idle clones (%s): %.0f MiB PSS in all", manySandboxes, key, sum)
	return f.down(ctx)
}
