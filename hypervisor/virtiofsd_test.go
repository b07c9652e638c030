package hypervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validVirtiofsd() VirtiofsdConfig {
	return VirtiofsdConfig{
		Path:   "/usr/lib/qemu/virtiofsd",
		Source: "/run/hull/sb1/share/shared",
		Socket: "/run/hull/sb1/virtiofsd.sock",
		Log:    "/run/hull/sb1/virtiofsd.log",
	}
}

func TestVirtiofsdArgsGolden(t *testing.T) {
	assertGolden(t, "virtiofsd", validVirtiofsd().Args())
}

func TestVirtiofsdArgsProperties(t *testing.T) {
	t.Run("confined to the source in its own namespaces", func(t *testing.T) {
		args := validVirtiofsd().Args()
		assertArgPair(t, args, "-o", "sandbox=namespace")
		assertArgPair(t, args, "-o", "source=/run/hull/sb1/share/shared")
		// The listening socket is inherited: QEMU never races its creation.
		if args[0] != "--fd=3" {
			t.Errorf("args start with %q, want --fd=3", args[0])
		}
	})
	t.Run("fuse_opt separators in the source are escaped", func(t *testing.T) {
		c := validVirtiofsd()
		c.Source = `/a,b\c/shared`
		assertArgPair(t, c.Args(), "-o", `source=/a\,b\\c/shared`)
	})
	t.Run("debug", func(t *testing.T) {
		c := validVirtiofsd()
		c.Debug = true
		assertArgPair(t, c.Args(), "-o", "log_level=debug")
	})
}

func TestVirtiofsdValidate(t *testing.T) {
	for name, mutate := range map[string]func(*VirtiofsdConfig){
		"no path":   func(c *VirtiofsdConfig) { c.Path = "" },
		"no source": func(c *VirtiofsdConfig) { c.Source = "" },
		"no socket": func(c *VirtiofsdConfig) { c.Socket = "" },
		"no log":    func(c *VirtiofsdConfig) { c.Log = "" },
	} {
		c := validVirtiofsd()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

// fakeVirtiofsd writes a shell script standing in for virtiofsd.
func fakeVirtiofsd(t *testing.T, dir, script string) VirtiofsdConfig {
	t.Helper()
	bin := filepath.Join(dir, "virtiofsd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return VirtiofsdConfig{Path: bin, Source: dir, Socket: filepath.Join(dir, "fs.sock"), Log: filepath.Join(dir, "fs.log")}
}

func TestVirtiofsdStartStop(t *testing.T) {
	dir := t.TempDir()
	// The fake holds the inherited socket (fd 3) open until SIGTERM.
	v := NewVirtiofsd(fakeVirtiofsd(t, dir, "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n"), nil)
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	if v.PID() <= 0 {
		t.Fatalf("PID() = %d after Start", v.PID())
	}
	fi, err := os.Stat(filepath.Join(dir, "fs.sock"))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want a 0600 socket", fi, err)
	}
	// QEMU's connect succeeds while virtiofsd holds the listening socket.
	conn, err := net.Dial("unix", filepath.Join(dir, "fs.sock"))
	if err != nil {
		t.Fatalf("connect to the socket virtiofsd holds: %v", err)
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want nil: it exits on SIGTERM", err)
	}
	select {
	case <-v.Done():
	default:
		t.Error("Done() open after Stop")
	}
}

func TestVirtiofsdKilledWhenDeaf(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "deaf")
	v := NewVirtiofsd(fakeVirtiofsd(t, dir, "trap '' TERM\ntouch "+ready+"\nwhile :; do sleep 0.05; done\n"), nil)
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
		time.Sleep(10 * time.Millisecond) // until it ignores SIGTERM
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := v.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop() = %v, want it killed after the deadline", err)
	}
}

func TestVirtiofsdExitReported(t *testing.T) {
	dir := t.TempDir()
	v := NewVirtiofsd(fakeVirtiofsd(t, dir, "echo 'fv_panic: it broke' >&2\nexit 1\n"), nil)
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done() not closed after the daemon exited")
	}
	if err := v.ExitError(); !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "fv_panic: it broke") {
		t.Errorf("ExitError() = %v, want the status and the log's end", err)
	}
}
