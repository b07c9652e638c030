//go:build integration

// Package integration boots real sandbox VMs under QEMU. It needs root, QEMU
// and the guest images `make guest` builds; without them it fails, it never
// skips.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
	"github.com/hull-runtime/hull/tests/fixture"
)

// guests are the kernel+initrd pairs under test, built by `make guest`, and
// the file system the container share comes over. guests boot on microvm,
// hull's default machine, with the guest root shared over 9p, hull's
// default image; the tuned kernel also boots from the initrd, on microvm
// and on q35. Debian's kernel boots on q35 from its initrd: without ACPI
// (which microvm runs without, see hypervisor.Config) it finds virtio-mmio
// devices only on the kernel command line, which it is not built to read
// (VIRTIO_MMIO_CMDLINE_DEVICES), and its 9p is a module. The share comes
// over each of virtio-9p and virtio-fs on both transports (virtio-mmio on
// microvm, PCI on q35) and with both kernels (virtio-fs built in, or the
// fuse and virtiofs modules).
var guests = []struct{ name, kernel, image, machine, sharedFS string }{
	{"tuned", "vmlinux-hull", "guest-root", "microvm", pod.SharedFS9P},
	{"tuned-q35-initrd", "vmlinux-hull", "initrd-hull.img", "q35", pod.SharedFS9P},
	{"tuned-bzimage-initrd", "vmlinuz-hull", "initrd-hull.img", "microvm", pod.SharedFS9P},
	{"generic", "vmlinuz-generic", "initrd-generic.img", "q35", pod.SharedFS9P},
	{"tuned-virtiofs", "vmlinux-hull", "guest-root", "microvm", pod.SharedFSVirtioFS},
	{"tuned-q35-initrd-virtiofs", "vmlinux-hull", "initrd-hull.img", "q35", pod.SharedFSVirtioFS},
	{"generic-virtiofs", "vmlinuz-generic", "initrd-generic.img", "q35", pod.SharedFSVirtioFS},
}

func buildDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("HULL_BUILD"); d != "" {
		return d
	}
	d, err := filepath.Abs("../../build")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sandboxConfig boots kernel and image (a guest root directory or an
// initrd) from build under TCG.
func sandboxConfig(t *testing.T, build, kernel, image, machine, sharedFS string) pod.Config {
	t.Helper()
	cfg := pod.DefaultConfig()
	cfg.Hypervisor.Accel = "tcg"
	cfg.Hypervisor.Machine = machine
	cfg.SharedFS.Type = sharedFS
	cfg.Hypervisor.Kernel = filepath.Join(build, kernel)
	image = filepath.Join(build, image)
	if strings.HasSuffix(image, ".img") {
		cfg.Hypervisor.GuestRoot, cfg.Hypervisor.Initrd = "", image
	} else {
		cfg.Hypervisor.GuestRoot = image
	}
	for _, f := range []string{cfg.Hypervisor.Kernel, image} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("guest image missing (run make guest): %v", err)
		}
	}
	return cfg
}

func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (bind mounts, QEMU)")
	}
}

// newBundle makes an OCI bundle whose rootfs is busybox-static.
func newBundle(t *testing.T, dir string) string {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	if _, err := fixture.Rootfs(bundle); err != nil {
		t.Fatal(err)
	}
	return bundle
}

func TestSandboxRunsContainers(t *testing.T) {
	requireHost(t)
	build := buildDir(t)
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	hostRelease := unix.ByteSliceToString(host.Release[:])

	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Cleanup(func() {
				if l := fixture.Leftovers(dir, 0); len(l) > 0 {
					t.Errorf("left behind: %v", l)
				}
			})
			cfg := sandboxConfig(t, build, g.kernel, g.image, g.machine, g.sharedFS)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			sbDir := filepath.Join(dir, "sandbox")
			sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: "sb-" + g.name, Dir: sbDir, Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					_ = sb.Stop(context.Background())
				}
			}()
			t.Logf("sandbox ready: %v", sb.Timings)
			if served := sb.Virtiofsd() != nil; served != (g.sharedFS == pod.SharedFSVirtioFS) {
				t.Fatalf("share over %s, but a virtiofsd runs: %v", g.sharedFS, served)
			}
			bundle := newBundle(t, dir)

			run := func(cid string, args ...string) (int, string, string) {
				t.Helper()
				var stdout, stderr bytes.Buffer
				status, err := sb.Guest().Run(ctx, cid, bundle, fixture.Spec(args...), pod.Stdio{Stdout: &stdout, Stderr: &stderr})
				if err != nil {
					t.Fatalf("run %v: %v", args, err)
				}
				return status, stdout.String(), stderr.String()
			}

			status, out, errOut := run("uname", "uname", "-r")
			guestRelease := strings.TrimSpace(out)
			if status != 0 || guestRelease == "" || guestRelease == hostRelease {
				t.Fatalf("uname -r in guest: status %d, %q (stderr %q); host has %q", status, guestRelease, errOut, hostRelease)
			}
			t.Logf("guest kernel %s, host kernel %s", guestRelease, hostRelease)

			if status, _, _ := run("exit3", "sh", "-c", "exit 3"); status != 3 {
				t.Fatalf("sh -c 'exit 3': status %d, want 3", status)
			}

			data := make([]byte, 10<<20)
			if _, err := rand.Read(data); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bundle, "rootfs/data/blob"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			status, out, errOut = run("sum", "sha256sum", "/data/blob")
			if status != 0 || !strings.HasPrefix(out, hex.EncodeToString(sum[:])) {
				t.Fatalf("sha256sum in guest: status %d, %q %q; want %x", status, out, errOut, sum)
			}

			// The guest keeps time: its timer ticks (a guest without one
			// hangs in sleep until ctx ends), and its clock reads the host's.
			status, out, errOut = run("clock", "sh", "-c", "sleep 1; date +%s")
			guestNow, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
			if status != 0 || perr != nil {
				t.Fatalf("sleep 1; date +%%s in guest: status %d, %q %q", status, out, errOut)
			}
			if d := time.Now().Unix() - guestNow; d > 10 || d < -10 {
				t.Errorf("guest clock %d is %d s off the host's", guestNow, d)
			}

			if err := sb.Stop(context.Background()); err != nil {
				t.Fatalf("stop: %v", err)
			}
			stopped = true
			if _, err := os.Stat(sbDir); !os.IsNotExist(err) {
				t.Errorf("sandbox dir still there: %v", err)
			}
			if l := fixture.Leftovers(dir, 0); len(l) > 0 {
				t.Fatalf("left behind after stop: %v", l)
			}
			fmt.Fprintln(os.Stderr, g.name, "ok")
		})
	}
}

// The agent tells the host that the OOM killer ended a container's init
// process, and its stats count the kill, as a containerd shim needs to
// report an OOMKilled container. One guest: the cgroup files are the
// kernel's, and both kernels are 6.1.
func TestOOMKillIsReported(t *testing.T) {
	requireHost(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if l := fixture.Leftovers(dir, 0); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	})
	g := guests[0]
	cfg := sandboxConfig(t, buildDir(t), g.kernel, g.image, g.machine, g.sharedFS)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: "sb-oom", Dir: filepath.Join(dir, "sandbox"), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sb.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	guest := sb.Guest()

	const limit = 32 << 20
	spec := fixture.Spec("sh", "-c", "x=a; while :; do x=$x$x; done")
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(limit))}}
	if err := guest.CreateContainer(ctx, "oom", newBundle(t, dir), spec, false); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := guest.RemoveContainer(context.Background(), "oom", true); err != nil {
			t.Errorf("remove: %v", err)
		}
	}()
	if err := guest.StartContainer(ctx, "oom"); err != nil {
		t.Fatal(err)
	}
	exit, err := guest.Agent.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: "oom"})
	if err != nil {
		t.Fatal(err)
	}
	if exit.Status != 137 || !exit.OomKilled {
		t.Errorf("init over its memory limit: status %d, oom_killed %v; want 137 and true", exit.Status, exit.OomKilled)
	}
	stats, err := guest.StatsContainer(ctx, "oom")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats after the kill: %v", stats)
	if stats.OomKills == 0 || stats.MemoryFailcnt == 0 || stats.MemoryLimitBytes != limit ||
		stats.MemoryMaxUsageBytes < limit/2 || stats.CpuUserNs+stats.CpuSystemNs == 0 {
		t.Errorf("stats after an OOM kill under a %d-byte limit: %v", limit, stats)
	}
}

func ptr[T any](v T) *T { return &v }
