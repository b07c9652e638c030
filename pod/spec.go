package pod

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ociVersionMin is the oldest spec version ValidateSpec accepts: any 1.x.
const ociVersionMin = "1.0.0"

// ValidateSpec refuses specs hull cannot run, with the reason.
func ValidateSpec(s *specs.Spec) error {
	if !strings.HasPrefix(s.Version, "1.") {
		return fmt.Errorf("unsupported ociVersion %q", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		return fmt.Errorf("root.path is required")
	}
	if s.Process == nil {
		return fmt.Errorf("process is required")
	}
	if len(s.Process.Args) == 0 {
		return fmt.Errorf("process.args must not be empty")
	}
	if s.Process.Cwd == "" || !strings.HasPrefix(s.Process.Cwd, "/") {
		return fmt.Errorf("process.cwd %q must be an absolute path", s.Process.Cwd)
	}
	return nil
}

// InBundle resolves a path of the spec (root.path, a bind mount's source)
// as runc does: relative paths are relative to the bundle.
func InBundle(bundle, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(bundle, p)
}
