package pod

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hull-runtime/hull/internal/atomicfile"
)

// DefaultShimRoot is where the containerd shim keeps its pods' state; the
// HULL_SHIM_ROOT environment variable (which containerd passes on to its
// shims) moves it.
const DefaultShimRoot = "/run/hull-shim"

// ShimRootEnv names the environment variable that moves the shim's root.
const ShimRootEnv = "HULL_SHIM_ROOT"

// ShimRoot is the shim's state root given $HULL_SHIM_ROOT's value.
func ShimRoot(env string) string {
	if env != "" {
		return env
	}
	return DefaultShimRoot
}

// Record is what a front end publishes about a container it runs, for the
// other front end's inspection commands (`hull list`, `hull state`) and for
// its refusal to change a container it does not own.
type Record struct {
	ID      string    `json:"id"`
	Sandbox string    `json:"sandbox"`
	Status  Status    `json:"status"`
	Bundle  string    `json:"bundle"`
	Created time.Time `json:"created"`
	// PID is the process callers know the container by (the shim's task
	// PID: its VM's QEMU).
	PID int `json:"pid"`
	// Frontend names who runs it, Namespace its containerd namespace.
	Frontend  string `json:"frontend"`
	Namespace string `json:"namespace,omitempty"`
	// Owner is the user who created it.
	Owner       string            `json:"owner,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RecordDir is the directory of a pod's container records under a
// sandbox directory.
func RecordDir(sandboxDir string) string { return filepath.Join(sandboxDir, "containers") }

// WriteRecord saves r atomically in dir.
func WriteRecord(dir string, r Record) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record %s: %w", r.ID, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record %s: %w", r.ID, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, r.ID+".json"), b, 0o600); err != nil {
		return fmt.Errorf("record %s: %w", r.ID, err)
	}
	return nil
}

// RemoveRecord removes a container's record from dir.
func RemoveRecord(dir, id string) error {
	if err := os.Remove(filepath.Join(dir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", id, err)
	}
	return nil
}

// ShimRecords lists the records of every pod under a shim root
// (<root>/<namespace>/<pod>/containers/<id>.json), sorted by ID.
func ShimRecords(root string) []Record {
	return ReadRecords(filepath.Join(root, "*", "*", "containers", "*.json"))
}

// ReadRecords reads the record files that match a glob pattern, sorted by
// ID. Unreadable ones are skipped: a pod may be going away while it is read.
func ReadRecords(pattern string) []Record {
	files, _ := filepath.Glob(pattern)
	var rs []Record
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(b, &r) == nil && r.ID != "" {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}
