package pod

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIsHostNetNS(t *testing.T) {
	if !IsHostNetNS("/proc/self/ns/net") {
		t.Error("our own network namespace must count as the host's")
	}
	f := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if IsHostNetNS(f) {
		t.Error("a plain file is not the host's namespace")
	}
	if IsHostNetNS(filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing path is not the host's namespace")
	}
}
