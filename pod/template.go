package pod

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hull-runtime/hull/hypervisor"
)

// VM templating (issue 13). `hull factory init` boots a template VM with its
// RAM in a file on tmpfs, lets its agent come up, and saves its device
// state beside the RAM (InitTemplate). A sandbox of the template's shape
// then starts as a clone: a QEMU with the same device model maps the RAM
// file copy-on-write and loads the state (Sandbox.startFromTemplate). The
// factory directory holds:
//
//	template.json   the published template (Template), replaced atomically
//	t-<ns>/         one template, made at <ns> since the epoch: memory,
//	                state, share/ (the empty 9p export it was saved
//	                with), read-only once published; netns, the pinned
//	                namespace of its NICs' taps, while init runs
//	tmpfs-by-hull   present when init mounted the tmpfs the directory is on
//
// A template is immutable once published: init writes a new t-<ns>/,
// replaces template.json and removes the older ones, so a clone never
// mixes two templates' files.

// Version is hull's version, set by the build; a template is made for one.
var Version = "dev"

// Files of the factory directory and of a template in it.
const (
	templateRecord  = "template.json"
	templateMounted = "tmpfs-by-hull"
	templateMemory  = "memory"
	templateState   = "state"
	templateShare   = "share"
	templateNetNS   = "netns"
	templatePrefix  = "t-"
)

// TemplateShape is what a VM template is made for. A sandbox starts from the
// template only when its own shape is the same: QEMU loads a saved state only
// into the same device model, and the guest in the template's RAM is that of
// its kernel, initrd and command line.
type TemplateShape struct {
	HullVersion string `json:"hull_version"`
	QEMU        FileID `json:"qemu"`
	Kernel      FileID `json:"kernel"`
	Initrd      FileID `json:"initrd"`
	Machine     string `json:"machine"`
	Accel       string `json:"accel"`
	CPUModel    string `json:"cpu_model"`
	VCPUs       int    `json:"vcpus"`
	MemoryMiB   int    `json:"memory_mib"`
	NICs        int    `json:"nics"`
	// KernelParams are the configured ones and hull's, but not the
	// accelerator's (the TSC rate given to a TCG guest is measured at each
	// start) nor hull.debug: a clone runs with the template's command line
	// whatever its own says, and a debug run should still clone.
	KernelParams string `json:"kernel_params"`
	ShareTag     string `json:"share_tag"`
	AgentPort    string `json:"agent_port"`
}

// templateMAC is the MAC of a template's NIC i: locally administered, "hull"
// in its middle bytes. A clone's NIC has it only until StartClone.
func templateMAC(i int) string { return fmt.Sprintf("02:68:75:6c:6c:%02x", i) }

// FileID tells a file apart from its other versions cheaply (a sandbox's
// start cannot afford to hash a kernel): its path, size and mtime.
type FileID struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

func fileID(path string) (FileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return FileID{}, err
	}
	return FileID{Path: path, Size: st.Size(), ModTime: st.ModTime().UTC()}, nil
}

// Hash names the shape: a template is rebuilt when any part of it changes.
func (s TemplateShape) Hash() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// diff says how other differs from s, one "field: s's value != other's"
// per field, for the log line of a sandbox that boots cold.
func (s TemplateShape) diff(other TemplateShape) string {
	var a, b map[string]any
	ja, _ := json.Marshal(s)
	jb, _ := json.Marshal(other)
	_ = json.Unmarshal(ja, &a)
	_ = json.Unmarshal(jb, &b)
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var d []string
	for _, k := range keys {
		va, _ := json.Marshal(a[k])
		vb, _ := json.Marshal(b[k])
		if string(va) != string(vb) {
			d = append(d, fmt.Sprintf("%s: %s != %s", k, va, vb))
		}
	}
	return strings.Join(d, "; ")
}

// shapeOf is the shape of a VM started with hc under accel.
func shapeOf(hc hypervisor.Config, accel hypervisor.Accel) (TemplateShape, error) {
	s := TemplateShape{HullVersion: Version, Machine: hc.Machine, Accel: hc.Accel, CPUModel: hc.CPUModel,
		VCPUs: hc.VCPUs, MemoryMiB: hc.MemoryMiB, NICs: len(hc.NICs), AgentPort: hc.Agent.PortName}
	if hc.Share != nil {
		s.ShareTag = hc.Share.Tag
	}
	var params []string
	for _, p := range hc.KernelParams {
		if !slices.Contains(accel.KernelParams, p) && !strings.HasPrefix(p, "hull.debug") {
			params = append(params, p)
		}
	}
	s.KernelParams = strings.Join(params, " ")
	var err error
	if s.QEMU, err = fileID(hc.Path); err != nil {
		return s, fmt.Errorf("template shape: %w", err)
	}
	if s.Kernel, err = fileID(hc.Kernel); err != nil {
		return s, fmt.Errorf("template shape: %w", err)
	}
	if hc.Initrd != "" {
		if s.Initrd, err = fileID(hc.Initrd); err != nil {
			return s, fmt.Errorf("template shape: %w", err)
		}
	}
	return s, nil
}

// Template is a published VM template, as template.json records it.
type Template struct {
	Shape TemplateShape `json:"shape"`
	Hash  string        `json:"hash"`
	// Dir is the template's directory (t-<ns>) in the factory directory.
	Dir string `json:"dir"`
	// StateBytes and StateSHA256 identify the state file, MemoryBytes is
	// the RAM file's size: a truncated or damaged template is not used.
	StateBytes  int64     `json:"state_bytes"`
	StateSHA256 string    `json:"state_sha256"`
	MemoryBytes int64     `json:"memory_bytes"`
	Created     time.Time `json:"created"`
	// Took is how long init took, from QEMU's spawn to the saved state.
	Took Duration `json:"took"`
	// Steps break Took down.
	Steps []Step `json:"steps"`
}

// MemoryPath and StatePath are the template's files in the factory dir.
func (t *Template) MemoryPath(factoryDir string) string {
	return filepath.Join(factoryDir, t.Dir, templateMemory)
}

func (t *Template) StatePath(factoryDir string) string {
	return filepath.Join(factoryDir, t.Dir, templateState)
}

// ErrNoTemplate means the factory directory holds no published template.
var ErrNoTemplate = errors.New("no VM template")

// ReadTemplate reads the template published in the factory directory dir.
func ReadTemplate(dir string) (*Template, error) {
	b, err := os.ReadFile(filepath.Join(dir, templateRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoTemplate, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	var t Template
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("read template %s: %w", filepath.Join(dir, templateRecord), err)
	}
	if t.Dir == "" || filepath.Base(t.Dir) != t.Dir || !strings.HasPrefix(t.Dir, templatePrefix) {
		return nil, fmt.Errorf("read template %s: bad directory %q", filepath.Join(dir, templateRecord), t.Dir)
	}
	return &t, nil
}

// Check reports why the template's files in dir cannot be cloned: missing,
// truncated, not the state it was saved with, or writable by others (a
// clone would run whatever guest memory they hold).
func (t *Template) Check(dir string) error {
	mem, err := os.Lstat(t.MemoryPath(dir))
	if err != nil {
		return fmt.Errorf("template memory: %w", err)
	}
	if err := ownedFile(mem, t.MemoryBytes); err != nil {
		return fmt.Errorf("template memory %s: %w", t.MemoryPath(dir), err)
	}
	f, err := os.Open(t.StatePath(dir))
	if err != nil {
		return fmt.Errorf("template state: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("template state: %w", err)
	}
	if err := ownedFile(st, t.StateBytes); err != nil {
		return fmt.Errorf("template state %s: %w", t.StatePath(dir), err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("template state: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != t.StateSHA256 {
		return fmt.Errorf("template state %s: sha256 %s, saved as %s", t.StatePath(dir), sum, t.StateSHA256)
	}
	return nil
}

// ownedFile checks a template file: regular, of size bytes, owned by this
// user and writable by no one else.
func ownedFile(fi os.FileInfo, size int64) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	case fi.Size() != size:
		return fmt.Errorf("%d bytes, saved with %d", fi.Size(), size)
	case !ok || int(st.Uid) != os.Geteuid():
		return errors.New("not owned by this user")
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("writable by others (%s)", fi.Mode().Perm())
	}
	return nil
}

// findTemplate returns the template in dir a VM of shape can be cloned from,
// or why there is none.
func findTemplate(dir string, shape TemplateShape) (*Template, error) {
	t, err := ReadTemplate(dir)
	if err != nil {
		return nil, err
	}
	if t.Hash != shape.Hash() {
		return nil, fmt.Errorf("template %s is for another shape: %s", t.Hash, t.Shape.diff(shape))
	}
	if err := t.Check(dir); err != nil {
		return nil, fmt.Errorf("template %s is damaged: %w", t.Hash, err)
	}
	return t, nil
}
