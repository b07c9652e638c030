package pod

import (
	"os"
	"path/filepath"
	"strconv"
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

func TestCreateNetNSLeavesTheHostNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Enough tries for one to land on the main thread, whose namespace
	// is the one /proc/self/ns/net names.
	for i := range 20 {
		path := filepath.Join(dir, "netns"+strconv.Itoa(i))
		if err := CreateNetNS(path); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = RemoveNetNS(path) })
		if IsHostNetNS(path) {
			t.Fatalf("try %d: a new namespace is taken for the host's", i)
		}
		if now, _ := os.Readlink("/proc/self/ns/net"); now != host {
			t.Fatalf("try %d: the process's namespace went from %s to %s", i, host, now)
		}
	}
}
