package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hull-runtime/hull/hypervisor"
	"github.com/hull-runtime/hull/pod"
)

// Machine options hull gives QEMU (see hypervisor.Config.Args); the floor
// boots with the same ones.
const floorMemoryMiB = 512

// floorGuest is how hull boots a guest under TCG by default: machine, kernel
// parameters and memory. The floor boots the same guest.
type floorGuest struct {
	machine string
	tbSize  int
	params  string
}

func defaultFloorGuest() (floorGuest, error) {
	h := pod.DefaultConfig().Hypervisor
	acc, err := hypervisor.ResolveAccel("tcg", h.KVMDevice, h.KVMProbeLimit.Duration)
	if err != nil {
		return floorGuest{}, err
	}
	params := append([]string{"console=ttyS0", "panic=1"}, acc.KernelParams...)
	params = append(params, h.KernelParams)
	return floorGuest{machine: h.Machine, tbSize: h.TCGTBSize, params: strings.Join(params, " ")}, nil
}

// buildPoweroffInitrd compiles ./poweroff statically and packs it as /init
// of a gzip'd cpio (newc) archive in dir; it returns the archive's path.
func buildPoweroffInitrd(ctx context.Context, dir string) (string, error) {
	src, err := benchSourceDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "poweroff")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./poweroff")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build poweroff init: %w: %s", err, out)
	}
	init, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var cpio bytes.Buffer
	w := newCpioWriter(&cpio)
	w.Dir("dev", 0o755)
	w.CharDev("dev/console", 0o600, 5, 1)
	w.File("init", 0o755, init)
	w.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(cpio.Bytes()); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "initrd-poweroff.img")
	return path, os.WriteFile(path, gz.Bytes(), 0o644)
}

// benchSourceDir is the directory of this program's sources (it holds
// ./poweroff).
func benchSourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok && filepath.IsAbs(file) {
		if _, err := os.Stat(filepath.Join(filepath.Dir(file), "poweroff")); err == nil {
			return filepath.Dir(file), nil
		}
	}
	for _, d := range []string{".", "bench"} {
		if _, err := os.Stat(filepath.Join(d, "poweroff", "main.go")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("cannot find bench/poweroff: run from the repository or bench/")
}

// goTool is the go command that is running us, else the one on PATH.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// rawBoot is one bare QEMU boot of kernel+initrd whose /init ends the VM.
type rawBoot struct {
	qemu, kernel, initrd string
	// devices adds the devices hull attaches (QMP, rng, virtio-serial
	// agent port, 9p share), rendered by hull's own hypervisor.Config.
	devices bool
	guest   floorGuest
	// extraParams are appended to the guest's kernel parameters.
	extraParams string
	// console, when set, receives the guest's serial console.
	console *[]byte
}

// run boots once in dir and returns the time from spawn to QEMU's exit.
func (b rawBoot) run(ctx context.Context, dir string) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	params := strings.TrimSpace(b.guest.params + " " + b.extraParams)
	cfg := hypervisor.Config{
		Path: b.qemu, Machine: b.guest.machine, Accel: "tcg", TBSizeMiB: b.guest.tbSize, CPUModel: "max", VCPUs: 1, MemoryMiB: floorMemoryMiB,
		Kernel: b.kernel, Initrd: b.initrd, KernelParams: []string{params},
		QMPSocket: filepath.Join(dir, "qmp.sock"), ConsoleLog: filepath.Join(dir, "console.log"),
	}
	var args []string
	if b.devices {
		share := filepath.Join(dir, "share")
		if err := os.Mkdir(share, 0o700); err != nil {
			return 0, err
		}
		cfg.Agent = hypervisor.AgentDevice{Transport: hypervisor.TransportSerial, SocketPath: filepath.Join(dir, "agent.sock"), PortName: "hull.agent"}
		cfg.Share = &hypervisor.ShareDevice{Path: share, Tag: "hullshare"}
		args = cfg.Args()
	} else {
		args = []string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"}
		args = append(args, cfg.MachineArgs()...)
		args = append(args, "-cpu", "max", "-smp", "1", "-m", fmt.Sprintf("%dM", floorMemoryMiB),
			"-chardev", "file,id=console0,path="+cfg.ConsoleLog, "-serial", "chardev:console0",
			"-kernel", b.kernel, "-initrd", b.initrd, "-append", cfg.KernelCmdline(),
		)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("raw boot: %w", err)
	}
	err := cmd.Wait()
	took := time.Since(start)
	if err != nil {
		console, _ := os.ReadFile(cfg.ConsoleLog)
		return 0, fmt.Errorf("raw boot of %s: %w: %s %s", b.kernel, err, stderr.Bytes(), tail(console, 512))
	}
	if b.console != nil {
		*b.console, _ = os.ReadFile(cfg.ConsoleLog)
	}
	return took, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
