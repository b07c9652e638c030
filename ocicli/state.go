package ocicli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/atomicfile"
	"github.com/hull-runtime/hull/pod"
)

// Sentinel errors of the state store and the monitors; the library's
// (pod.ErrNotFound, pod.ErrNotRunning, ...) are the ones the shim shares.
var (
	ErrExists      = errors.New("container already exists")
	ErrInvalidID   = errors.New("invalid container id")
	ErrSandboxGone = errors.New("sandbox is not running")
	// ErrShimOwned is a container the containerd shim runs: the CLI shows
	// it, and leaves it alone.
	ErrShimOwned = errors.New("container is not the CLI's")
)

// ContainerState is what hull keeps on disk for one container.
type ContainerState struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	SandboxID   string            `json:"sandboxId"`
	Status      pod.Status        `json:"status"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Proxy is the host process standing for the container's init (the
	// PID written to --pid-file).
	Proxy pod.ProcessRef `json:"proxy"`
	// Execs are the proxies of detached exec processes.
	Execs map[string]pod.ProcessRef `json:"execs,omitempty"`
	// CgroupsPath is the spec's linux.cgroupsPath, which holds the host
	// processes of the container (and of its sandbox, for the owner).
	CgroupsPath string `json:"cgroupsPath,omitempty"`
	// CgroupDriver made that cgroup ("" in older state: cgroupfs).
	CgroupDriver pod.CgroupDriver `json:"cgroupDriver,omitempty"`
	// NetNS is the network namespace the container's proxy lives in: its
	// sandbox's.
	NetNS string `json:"netns,omitempty"`
	// Frontend names who runs a container that is not the CLI's (the
	// containerd shim); "" for the CLI's own.
	Frontend string `json:"frontend,omitempty"`
}

// Store keeps container state under a root directory (--root):
// containers/<id>/state.json and sandboxes/<id>/.
type Store struct {
	Root string
}

// maxIDLen bounds container IDs, as runc does in practice.
const maxIDLen = 1024

// ValidateID refuses IDs that are empty, too long or could name another path.
func ValidateID(id string) error {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || strings.Contains(id, "..") {
		return fmt.Errorf("%w %q", ErrInvalidID, truncate(id, 64))
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w %q", ErrInvalidID, truncate(id, 64))
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ContainerDir is the directory of one container's state.
func (s *Store) ContainerDir(id string) string { return filepath.Join(s.Root, "containers", id) }

// SandboxDir is the directory of one sandbox (its monitor, QEMU, share). It
// is named by a hash of the ID: unix socket paths must stay under 108 bytes,
// and callers' roots and IDs (docker's are 64 characters) are long.
func (s *Store) SandboxDir(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(s.Root, "sandboxes", hex.EncodeToString(sum[:8]))
}

// MonitorRefPath is where a sandbox's monitor records itself before booting.
func (s *Store) MonitorRefPath(sid string) string { return s.SandboxDir(sid) + ".monitor" }

// NetNSPath is where hull pins a network namespace it created for a sandbox.
func (s *Store) NetNSPath(sid string) string { return filepath.Join(s.Root, "netns", sid) }

// Lock takes the container's exclusive lock; unlock with the returned func.
func (s *Store) Lock(id string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.ContainerDir(id), "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", pod.ErrNotFound, id)
		}
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", id, err)
	}
	return func() { f.Close() }, nil
}

// Reserve creates the container's directory; it fails with ErrExists if the
// ID is taken.
func (s *Store) Reserve(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.Root, "containers"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(s.Root, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(s.ContainerDir(id), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, id)
		}
		return err
	}
	return nil
}

// Save writes the state atomically.
func (s *Store) Save(st *ContainerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.ContainerDir(st.ID), "state.json"), b, 0o600); err != nil {
		return fmt.Errorf("save state of %s: %w", st.ID, err)
	}
	return nil
}

// SaveSpec keeps the config.json that create saw: start and every later
// operation use it, whatever happens to the bundle's copy afterwards.
func (s *Store) SaveSpec(id string, config []byte) error {
	if err := os.WriteFile(filepath.Join(s.ContainerDir(id), "config.json"), config, 0o600); err != nil {
		return fmt.Errorf("save config of %s: %w", id, err)
	}
	return nil
}

// Spec reads the config.json that create saw.
func (s *Store) Spec(id string) (*specs.Spec, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	spec, _, err := pod.ReadSpec(filepath.Join(s.ContainerDir(id), "config.json"))
	return spec, err
}

// Load reads a container's state.
func (s *Store) Load(id string) (*ContainerState, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.ContainerDir(id), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", pod.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", id, err)
	}
	var st ContainerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("load state of %s: %w", id, err)
	}
	return &st, nil
}

// Remove deletes a container's state directory.
func (s *Store) Remove(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	return os.RemoveAll(s.ContainerDir(id))
}

// IDs lists the containers in the store, sorted.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Root, "containers"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}
