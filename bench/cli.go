package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hull-runtime/hull/pod"
)

// cliBatch is how many invocations of an op one sample averages: a single
// exec of a small CLI is a few milliseconds and very noisy.
const cliBatch = 5

// cliOps are the operations on a running container timed against runc;
// `kill c1 0` is the liveness probe (no signal sent).
var cliOps = []struct {
	key  string
	args []string
}{
	{"state", []string{"state", "c1"}},
	{"list", []string{"list"}},
	{"kill", []string{"kill", "c1", "0"}},
	{"ps", []string{"ps", "--format", "json", "c1"}},
}

// runtimeCLI runs one OCI runtime binary against its own state root.
type runtimeCLI struct {
	bin, root string
	env       []string
	// log collects the stderr of create/run, whose children keep it open.
	log string
}

func (r runtimeCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin, append([]string{"--root", r.root}, args...)...)
	cmd.Env = append(os.Environ(), r.env...)
	return cmd
}

// run runs one short command and fails with its output.
func (r runtimeCLI) run(ctx context.Context, args ...string) error {
	out, err := r.command(ctx, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(r.bin), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// detached runs a command whose children outlive it (create, run -d) with
// stdin and stdout on /dev/null and stderr to r.log: a pipe would be held
// open by the container's proxy.
func (r runtimeCLI) detached(ctx context.Context, args ...string) error {
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := r.command(ctx, args...)
	cmd.Stderr = logf
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(r.log)
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(r.bin), strings.Join(args, " "), err, tail(bytes.TrimSpace(b), 512))
	}
	return nil
}

// timeOp returns the mean wall time of cliBatch runs of args.
func (r runtimeCLI) timeOp(ctx context.Context, args ...string) (time.Duration, error) {
	t0 := time.Now()
	for range cliBatch {
		if err := r.command(ctx, args...).Run(); err != nil {
			return 0, fmt.Errorf("%s %s: %w", filepath.Base(r.bin), strings.Join(args, " "), err)
		}
	}
	return time.Since(t0) / cliBatch, nil
}

// hull returns a CLI for the built hull with a fresh root and a
// configuration (tcg, images from build/, memMiB of guest memory, the
// share over sharedFS) in dir.
func (b *bench) hull(dir string, memMiB int, sharedFS string) (runtimeCLI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return runtimeCLI{}, err
	}
	conf := filepath.Join(dir, "hull.toml")
	if err := b.writeHullConfig(conf, memMiB, sharedFS); err != nil {
		return runtimeCLI{}, err
	}
	return runtimeCLI{bin: b.file("hull"), root: filepath.Join(dir, "root"), env: []string{"HULL_CONFIG=" + conf}, log: filepath.Join(dir, "hull.log")}, nil
}

// writeHullConfig writes a hull configuration to path: tcg, the built
// kernel and guest root, memMiB of guest memory, the share over sharedFS.
func (b *bench) writeHullConfig(path string, memMiB int, sharedFS string) error {
	toml := fmt.Sprintf("[hypervisor]\naccel = \"tcg\"\nkernel = %q\nguest_root = %q\ndefault_memory = %d\n\n[shared_fs]\ntype = %q\n",
		b.file(tunedKernel), b.file(tunedImage), memMiB, sharedFS)
	return os.WriteFile(path, []byte(toml), 0o600)
}

// cli times state, list and ps of one running `sleep 600` container, hull's
// against runc's.
func (b *bench) cli(ctx context.Context) error {
	dir := filepath.Join(b.tmp, "cli")
	h, err := b.hull(dir, 256, pod.DefaultConfig().SharedFS.Type)
	if err != nil {
		return err
	}
	hb := filepath.Join(dir, "bundle-hull")
	if err := writeBundle(hb, "sleep", "600"); err != nil {
		return err
	}
	defer h.run(context.WithoutCancel(ctx), "delete", "--force", "c1")
	if err := h.detached(ctx, "create", "--bundle", hb, "--pid-file", filepath.Join(dir, "hull.pid"), "c1"); err != nil {
		return err
	}
	if err := h.run(ctx, "start", "c1"); err != nil {
		return err
	}

	rc := runtimeCLI{bin: b.runc, root: filepath.Join(dir, "runc-root"), log: filepath.Join(dir, "runc.log")}
	rb := filepath.Join(dir, "bundle-runc")
	if err := writeRuncBundle(b.runc, rb, "sleep", "600"); err != nil {
		return err
	}
	defer rc.run(context.WithoutCancel(ctx), "delete", "--force", "c1")
	if err := rc.detached(ctx, "run", "-d", "--bundle", rb, "c1"); err != nil {
		return err
	}

	for range b.n {
		for _, op := range cliOps {
			for _, side := range []struct {
				name string
				cli  runtimeCLI
			}{{"hull", h}, {"runc", rc}} {
				d, err := side.cli.timeOp(ctx, op.args...)
				if err != nil {
					return err
				}
				b.s.Add(fmt.Sprintf("cli_%s_%s", op.key, side.name), ms(d))
			}
		}
	}
	b.note("CLI: built `hull` (config: tcg, 256 MiB) and Debian's runc, each with one running `sleep 600` container; "+
		"a sample is the mean of %d consecutive runs of the op. `kill c1 0` sends no signal; it checks that the process is there.", cliBatch)
	return nil
}
