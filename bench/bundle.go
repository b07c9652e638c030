package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/runtime"
)

// makeRootfs fills dir/rootfs with busybox-static and a link per applet.
func makeRootfs(dir string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "data"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is needed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			return "", err
		}
	}
	return rootfs, nil
}

// specFor is hull's default spec running args, without a terminal.
func specFor(args ...string) *specs.Spec {
	s := runtime.DefaultSpec()
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Readonly = false
	return s
}

// writeBundle makes an OCI bundle in dir running args: rootfs plus the
// config.json of hull's default spec.
func writeBundle(dir string, args ...string) error {
	if _, err := makeRootfs(dir); err != nil {
		return err
	}
	return writeSpec(dir, specFor(args...))
}

func writeSpec(dir string, s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

// writeRuncBundle makes a bundle from `runc spec`, so runc runs with its own
// defaults, running args without a terminal.
func writeRuncBundle(runc, dir string, args ...string) error {
	if _, err := makeRootfs(dir); err != nil {
		return err
	}
	if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w: %s", err, bytes.TrimSpace(out))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Readonly = false
	return writeSpec(dir, &s)
}
