package pod

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hull-runtime/hull/hypervisor"
)

func testShape() TemplateShape {
	return TemplateShape{HullVersion: "v1", QEMU: FileID{Path: "/q", Size: 1}, Kernel: FileID{Path: "/k", Size: 2},
		Initrd: FileID{Path: "/i", Size: 3}, Machine: "microvm", Accel: "tcg", CPUModel: "max", VCPUs: 1, MemoryMiB: 256,
		KernelParams: "quiet hull.port=hull.agent", ShareTag: "hullshare", AgentPort: "hull.agent"}
}

// Every part of the shape is in its hash: a template is rebuilt, or not
// used, when any of them changes.
func TestTemplateShapeHash(t *testing.T) {
	base := testShape()
	changes := map[string]func(s *TemplateShape){
		"hull_version":  func(s *TemplateShape) { s.HullVersion = "v2" },
		"qemu":          func(s *TemplateShape) { s.QEMU.ModTime = time.Unix(1, 0) },
		"kernel":        func(s *TemplateShape) { s.Kernel.Size = 20 },
		"initrd":        func(s *TemplateShape) { s.Initrd.Path = "/j" },
		"machine":       func(s *TemplateShape) { s.Machine = "q35" },
		"accel":         func(s *TemplateShape) { s.Accel = "kvm" },
		"cpu_model":     func(s *TemplateShape) { s.CPUModel = "host" },
		"vcpus":         func(s *TemplateShape) { s.VCPUs = 2 },
		"memory_mib":    func(s *TemplateShape) { s.MemoryMiB = 512 },
		"nics":          func(s *TemplateShape) { s.NICs = 1 },
		"kernel_params": func(s *TemplateShape) { s.KernelParams += " x" },
		"share_tag":     func(s *TemplateShape) { s.ShareTag = "other" },
		"agent_port":    func(s *TemplateShape) { s.AgentPort = "other" },
	}
	for field, change := range changes {
		s := testShape()
		change(&s)
		if s.Hash() == base.Hash() {
			t.Errorf("changing %s keeps the hash", field)
		}
		if d := base.diff(s); !strings.HasPrefix(d, field+": ") || strings.Contains(d, ";") {
			t.Errorf("diff after changing %s = %q, want that field alone", field, d)
		}
	}
	if testShape().Hash() != base.Hash() {
		t.Error("the same shape hashes differently")
	}
}

// The accelerator's parameters (a TSC rate measured at every start) and
// hull.debug are no part of the shape; the rest of the command line is.
func TestShapeOfKernelParams(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hc := hypervisor.Config{Path: exe, Kernel: exe, Initrd: exe, Machine: "microvm", Accel: "tcg", VCPUs: 1, MemoryMiB: 256,
		KernelParams: []string{"console=ttyS0", "tsc_early_khz=2596149", "quiet", "hull.debug=1", "hull.template=1"}}
	accel := hypervisor.Accel{Name: "tcg", KernelParams: []string{"tsc_early_khz=2596149"}}
	s, err := shapeOf(hc, accel)
	if err != nil {
		t.Fatal(err)
	}
	if want := "console=ttyS0 quiet hull.template=1"; s.KernelParams != want {
		t.Errorf("KernelParams = %q, want %q", s.KernelParams, want)
	}
	hc.KernelParams[1] = "tsc_early_khz=2596150"
	accel.KernelParams[0] = hc.KernelParams[1]
	if s2, _ := shapeOf(hc, accel); s2.Hash() != s.Hash() {
		t.Error("another TSC rate changes the shape")
	}
	hc.Initrd = filepath.Join(t.TempDir(), "missing.img")
	if _, err := shapeOf(hc, accel); err == nil {
		t.Error("shapeOf succeeded with a missing initrd")
	}
}

// writeTemplate publishes a template of shape in dir, as init would, with
// RAM of memBytes and state, and returns it.
func writeTemplate(t *testing.T, dir string, shape TemplateShape, memBytes int64, state string) *Template {
	t.Helper()
	tdir := filepath.Join(dir, templatePrefix+"100")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(tdir, templateMemory)
	if err := os.WriteFile(mem, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(mem, memBytes); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, templateState), []byte(state), 0o400); err != nil {
		t.Fatal(err)
	}
	tm := &Template{Shape: shape, Hash: shape.Hash(), Dir: filepath.Base(tdir), MemoryBytes: memBytes}
	var err error
	if tm.StateBytes, tm.StateSHA256, err = hashFile(filepath.Join(tdir, templateState)); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, templateRecord), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return tm
}

// A sandbox clones only a whole template of its own shape; anything else
// is a reason to boot cold, which findTemplate gives.
func TestFindTemplate(t *testing.T) {
	shape := testShape()
	const mem = 1 << 20
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string, tm *Template)
		wantErr string // "" finds the template
	}{
		{"whole", func(*testing.T, string, *Template) {}, ""},
		{"none", func(t *testing.T, dir string, _ *Template) { rm(t, filepath.Join(dir, templateRecord)) }, "no VM template"},
		{"half-written record", func(t *testing.T, dir string, _ *Template) {
			truncate(t, filepath.Join(dir, templateRecord), 10)
		}, "read template"},
		{"truncated state", func(t *testing.T, dir string, tm *Template) { truncate(t, tm.StatePath(dir), 3) }, "3 bytes, saved with"},
		{"other state", func(t *testing.T, dir string, tm *Template) {
			rm(t, tm.StatePath(dir))
			if err := os.WriteFile(tm.StatePath(dir), []byte("QEVM-STATE"), 0o400); err != nil {
				t.Fatal(err)
			}
		}, "sha256"},
		{"truncated memory", func(t *testing.T, dir string, tm *Template) { truncate(t, tm.MemoryPath(dir), 4096) }, "4096 bytes"},
		{"missing memory", func(t *testing.T, dir string, tm *Template) { rm(t, tm.MemoryPath(dir)) }, "template memory"},
		{"memory others may write", func(t *testing.T, dir string, tm *Template) {
			if err := os.Chmod(tm.MemoryPath(dir), 0o666); err != nil {
				t.Fatal(err)
			}
		}, "writable by others"},
		{"memory a symlink", func(t *testing.T, dir string, tm *Template) {
			other := filepath.Join(dir, "elsewhere")
			if err := os.Rename(tm.MemoryPath(dir), other); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, tm.MemoryPath(dir)); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tm := writeTemplate(t, dir, shape, mem, "QEVM-state")
			tt.damage(t, dir, tm)
			got, err := findTemplate(dir, shape)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("findTemplate = %v, want the template", err)
			case tt.wantErr == "" && got.Hash != shape.Hash():
				t.Errorf("findTemplate found %s, want %s", got.Hash, shape.Hash())
			case tt.wantErr != "" && err == nil:
				t.Fatalf("findTemplate found a template, want an error mentioning %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("findTemplate = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	t.Run("another shape", func(t *testing.T) {
		dir := t.TempDir()
		writeTemplate(t, dir, shape, mem, "QEVM-state")
		other := shape
		other.MemoryMiB = 512
		_, err := findTemplate(dir, other)
		if err == nil || !strings.Contains(err.Error(), "memory_mib: 256 != 512") {
			t.Errorf("findTemplate for another shape = %v, want an error naming memory_mib", err)
		}
	})
	t.Run("record naming a directory elsewhere", func(t *testing.T) {
		dir := t.TempDir()
		tm := writeTemplate(t, dir, shape, mem, "QEVM-state")
		tm.Dir = "../" + tm.Dir
		b, _ := json.Marshal(tm)
		if err := os.WriteFile(filepath.Join(dir, templateRecord), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := findTemplate(dir, shape); err == nil || !strings.Contains(err.Error(), "bad directory") {
			t.Errorf("findTemplate = %v, want a bad directory", err)
		}
	})
}

// destroy leaves nothing of the factory, and is no error without one.
func TestDestroyTemplate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Factory.Dir = filepath.Join(t.TempDir(), "factory")
	if err := DestroyTemplate(cfg); err != nil {
		t.Fatalf("DestroyTemplate without a factory dir: %v", err)
	}
	if err := os.Mkdir(cfg.Factory.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTemplate(t, cfg.Factory.Dir, testShape(), 1<<20, "QEVM")
	// A second template, as a concurrent init would leave.
	if err := os.MkdirAll(filepath.Join(cfg.Factory.Dir, templatePrefix+"200", templateShare), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := DestroyTemplate(cfg); err != nil {
		t.Fatalf("DestroyTemplate: %v", err)
	}
	if _, err := os.Lstat(cfg.Factory.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("factory dir after destroy: %v, want it gone", err)
	}
	if _, err := ReadTemplate(cfg.Factory.Dir); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("ReadTemplate after destroy = %v, want ErrNoTemplate", err)
	}
}

func TestInitTemplateNeedsTemplateOn(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Factory.Dir = filepath.Join(t.TempDir(), "factory")
	if _, err := InitTemplate(t.Context(), cfg, nil); !errors.Is(err, ErrTemplateOff) {
		t.Errorf("InitTemplate with factory.template off = %v, want ErrTemplateOff", err)
	}
	if _, err := os.Lstat(cfg.Factory.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("InitTemplate refused but made %s", cfg.Factory.Dir)
	}
}

// A template has factory.nics NICs, and a clone gives each the MAC of the
// sandbox's interface in the same place.
func TestTemplateNICs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hypervisor.Path, cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd, cfg.Hypervisor.Accel = exe, exe, exe, "tcg"
	for _, n := range []int{0, 1, 3} {
		cfg.Factory.NICs = n
		s, err := DefaultTemplateShape(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.NICs != n {
			t.Errorf("factory.nics = %d: the default shape has %d NICs", n, s.NICs)
		}
	}
	if m0, m1 := templateMAC(0), templateMAC(1); m0 == m1 || m0 != "02:68:75:6c:6c:00" {
		t.Errorf("template MACs %s, %s", m0, m1)
	}
	var none *Network
	if got := none.CloneAddresses(); got != nil {
		t.Errorf("no network: CloneAddresses = %v", got)
	}
	n := &Network{Endpoints: []Endpoint{{MAC: "0a:00:00:00:00:01"}, {MAC: "0a:00:00:00:00:02"}}}
	got := n.CloneAddresses()
	if len(got) != 2 || got[0].TemplateMac != templateMAC(0) || got[0].Mac != "0a:00:00:00:00:01" ||
		got[1].TemplateMac != templateMAC(1) || got[1].Mac != "0a:00:00:00:00:02" {
		t.Errorf("CloneAddresses = %v", got)
	}
}

func rm(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
}
