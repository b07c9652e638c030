package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/tests/fixture"
)

// writeBundle makes an OCI bundle in dir running args: rootfs plus the
// config.json of hull's default spec.
func writeBundle(dir string, args ...string) error {
	if _, err := fixture.Rootfs(dir); err != nil {
		return err
	}
	return writeSpec(dir, fixture.Spec(args...))
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
	if _, err := fixture.Rootfs(dir); err != nil {
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
