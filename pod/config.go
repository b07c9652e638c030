package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is hull's configuration.toml. Every option is documented in the
// file at the repository root.
type Config struct {
	Hypervisor HypervisorConfig `toml:"hypervisor"`
	SharedFS   SharedFSConfig   `toml:"shared_fs"`
	Agent      AgentConfig      `toml:"agent"`
	Timeouts   TimeoutsConfig   `toml:"timeouts"`
	Factory    FactoryConfig    `toml:"factory"`
	Runtime    RuntimeConfig    `toml:"runtime"`

	// Source is the file the configuration was read from ("" for defaults).
	Source string `toml:"-"`
}

// HypervisorConfig sizes and boots the VM.
type HypervisorConfig struct {
	Path          string   `toml:"path"`
	Machine       string   `toml:"machine"`
	Accel         string   `toml:"accel"`
	KVMDevice     string   `toml:"kvm_device"`
	KVMProbeLimit Duration `toml:"kvm_probe_limit"`
	Kernel        string   `toml:"kernel"`
	// GuestRoot is the guest's root file system as a host directory, shared
	// read-only over 9p; Initrd is the alternative. Exactly one is set.
	GuestRoot    string `toml:"guest_root"`
	Initrd       string `toml:"initrd"`
	KernelParams string `toml:"kernel_params"`
	DefaultVCPUs int    `toml:"default_vcpus"`
	// DefaultMemory is the guest memory in MiB when the spec sets no limit.
	DefaultMemory int `toml:"default_memory"`
	// MemoryOverhead is added to a container's memory limit for the guest
	// kernel and agent, in MiB.
	MemoryOverhead int `toml:"memory_overhead"`
	// TCGTBSize caps QEMU's TCG translation cache, in MiB (0: QEMU's own
	// default).
	TCGTBSize int `toml:"tcg_tb_size"`
	// Seccomp, Chroot and QEMUUser confine QEMU once it has opened its
	// files: its seccomp filter, an empty per-sandbox root, and an
	// unprivileged user (which a 9p share rules out).
	Seccomp  bool   `toml:"seccomp"`
	Chroot   bool   `toml:"chroot"`
	QEMUUser string `toml:"qemu_user"`
}

// SharedFSConfig is the container rootfs share.
type SharedFSConfig struct {
	// Type is SharedFS9P or SharedFSVirtioFS.
	Type string `toml:"type"`
	Tag  string `toml:"tag"`
	// Virtiofsd is the virtio-fs daemon's binary.
	Virtiofsd string `toml:"virtiofsd"`
}

// Shared file system types.
const (
	// SharedFS9P: QEMU serves the share over virtio-9p.
	SharedFS9P = "virtio-9p"
	// SharedFSVirtioFS: a sandboxed virtiofsd serves it over virtio-fs.
	SharedFSVirtioFS = "virtio-fs"
)

// AgentConfig is the host↔guest channel.
type AgentConfig struct {
	Transport string `toml:"transport"`
	PortName  string `toml:"port_name"`
	VsockPort uint32 `toml:"vsock_port"`
}

// TimeoutsConfig bounds every wait on QEMU and the guest.
type TimeoutsConfig struct {
	QMP       Duration `toml:"qmp"`
	Boot      Duration `toml:"boot"`
	Powerdown Duration `toml:"powerdown"`
	Quit      Duration `toml:"quit"`
	Request   Duration `toml:"request"`
	// Restore bounds a clone's start from the VM template, from QEMU's
	// spawn to its agent's answer; past it the sandbox boots cold.
	Restore Duration `toml:"restore"`
}

// FactoryConfig is VM templating: sandboxes start as clones of a template
// VM that `hull factory init` booted and saved (see template.go).
type FactoryConfig struct {
	// Template makes sandboxes of the template's shape start from it.
	Template bool `toml:"template"`
	// Dir holds the template; `hull factory init` mounts a tmpfs there
	// unless it already is on one.
	Dir string `toml:"dir"`
	// NICs is how many network interfaces the template has: a sandbox
	// with another number boots cold.
	NICs int `toml:"nics"`
	// TCGTBSize is a clone's TCG translation cache, in MiB; 0 keeps
	// hypervisor.tcg_tb_size. It is no part of the template's shape.
	TCGTBSize int `toml:"tcg_tb_size"`
}

// MaxTemplateNICs bounds factory.nics.
const MaxTemplateNICs = 8

// RuntimeConfig holds the rest.
type RuntimeConfig struct {
	Debug bool `toml:"debug"`
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText renders a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Install locations used by `make install` and the default configuration.
const (
	DefaultConfigPath = "/etc/hull/configuration.toml"
	InstalledConfig   = "/usr/local/share/hull/configuration.toml"
	installedDataDir  = "/usr/local/share/hull"
)

// DefaultQEMUUser is the unprivileged user QEMU runs as; `make install`
// and deploy/node-setup.sh create it.
const DefaultQEMUUser = "hull-qemu"

// DefaultKernelParams keep a guest's boot short under TCG: no console
// chatter, no clock or keyboard-controller probing nobody needs.
const DefaultKernelParams = "quiet tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.noaux=1 i8042.nopnp=1 i8042.dumbkbd=1 cryptomgr.notests pci=lastbus=0"

// DefaultConfig is what hull runs with when no file says otherwise.
func DefaultConfig() Config {
	return Config{
		Hypervisor: HypervisorConfig{
			Path:           "/usr/bin/qemu-system-x86_64",
			Machine:        "microvm",
			Accel:          "auto",
			KVMDevice:      "/dev/kvm",
			KVMProbeLimit:  Duration{50 * time.Millisecond},
			Kernel:         installedDataDir + "/vmlinux",
			GuestRoot:      installedDataDir + "/guest-root",
			KernelParams:   DefaultKernelParams,
			DefaultVCPUs:   1,
			DefaultMemory:  512,
			MemoryOverhead: 128,
			TCGTBSize:      32,
			Seccomp:        true,
			Chroot:         true,
			QEMUUser:       DefaultQEMUUser,
		},
		SharedFS: SharedFSConfig{Type: SharedFSVirtioFS, Tag: "hullshare", Virtiofsd: "/usr/lib/qemu/virtiofsd"},
		Agent:    AgentConfig{Transport: "virtio-serial", PortName: "hull.agent", VsockPort: 1024},
		Timeouts: TimeoutsConfig{
			QMP:       Duration{10 * time.Second},
			Boot:      Duration{60 * time.Second},
			Powerdown: Duration{time.Second},
			Quit:      Duration{3 * time.Second},
			Request:   Duration{60 * time.Second},
			Restore:   Duration{10 * time.Second},
		},
		Factory: FactoryConfig{Dir: DefaultFactoryDir, NICs: 1},
	}
}

// DefaultFactoryDir is where `hull factory init` puts the VM template.
const DefaultFactoryDir = "/run/hull-factory"

// LoadConfig reads the configuration from the --config flag's file, else
// $HULL_CONFIG's, else /etc/hull/configuration.toml, else the installed
// default; with none of the last two, the built-in defaults apply. A file
// named by the flag or the environment must exist.
func LoadConfig(flag, env string) (Config, error) {
	for _, explicit := range []string{flag, env} {
		if explicit != "" {
			return loadConfigFile(explicit)
		}
	}
	for _, path := range []string{DefaultConfigPath, InstalledConfig} {
		if _, err := os.Stat(path); err == nil {
			return loadConfigFile(path)
		}
	}
	return DefaultConfig(), nil
}

func loadConfigFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Source = path
	return cfg, nil
}

// ParseConfig decodes TOML over the defaults and checks the result.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	md, err := toml.Decode(string(b), &cfg)
	if err != nil {
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown option(s): %s", strings.Join(keys, ", "))
	}
	// The guest image is guest_root or initrd: a file that names only the
	// initrd means the initrd, not the default guest root as well.
	if md.IsDefined("hypervisor", "initrd") && !md.IsDefined("hypervisor", "guest_root") {
		cfg.Hypervisor.GuestRoot = ""
	}
	return cfg, cfg.Validate()
}

// Validate reports the first option that cannot work.
func (c *Config) Validate() error {
	h := c.Hypervisor
	switch {
	case h.Path == "":
		return errors.New("hypervisor.path is empty")
	case h.Machine != "q35" && h.Machine != "microvm":
		return fmt.Errorf("hypervisor.machine %q: want q35 or microvm", h.Machine)
	case h.Accel != "auto" && h.Accel != "kvm" && h.Accel != "tcg":
		return fmt.Errorf("hypervisor.accel %q: want auto, kvm or tcg", h.Accel)
	case h.Kernel == "":
		return errors.New("hypervisor.kernel is empty")
	case (h.GuestRoot == "") == (h.Initrd == ""):
		return fmt.Errorf("hypervisor.guest_root %q and hypervisor.initrd %q: set exactly one", h.GuestRoot, h.Initrd)
	case h.DefaultVCPUs < 1 || h.DefaultVCPUs > 64:
		return fmt.Errorf("hypervisor.default_vcpus %d: want 1 to 64", h.DefaultVCPUs)
	case h.DefaultMemory < 64:
		return fmt.Errorf("hypervisor.default_memory %d MiB: want at least 64", h.DefaultMemory)
	case h.TCGTBSize < 0:
		return fmt.Errorf("hypervisor.tcg_tb_size %d: must not be negative", h.TCGTBSize)
	case h.MemoryOverhead < 0:
		return fmt.Errorf("hypervisor.memory_overhead %d: must not be negative", h.MemoryOverhead)
	case c.SharedFS.Type != SharedFS9P && c.SharedFS.Type != SharedFSVirtioFS:
		return fmt.Errorf("shared_fs.type %q: want %s or %s", c.SharedFS.Type, SharedFS9P, SharedFSVirtioFS)
	case c.SharedFS.Type == SharedFSVirtioFS && c.SharedFS.Virtiofsd == "":
		return errors.New("shared_fs.virtiofsd is empty")
	case c.SharedFS.Tag == "" || len(c.SharedFS.Tag) > 31:
		return fmt.Errorf("shared_fs.tag %q: want 1 to 31 characters", c.SharedFS.Tag)
	case c.Agent.Transport != "virtio-serial" && c.Agent.Transport != "vsock":
		return fmt.Errorf("agent.transport %q: want virtio-serial or vsock", c.Agent.Transport)
	case c.Agent.Transport == "virtio-serial" && c.Agent.PortName == "":
		return errors.New("agent.port_name is empty")
	case c.Agent.Transport == "vsock" && c.Agent.VsockPort == 0:
		return errors.New("agent.vsock_port is 0")
	}
	if err := c.Factory.validate(c); err != nil {
		return err
	}
	for name, d := range map[string]Duration{"qmp": c.Timeouts.QMP, "boot": c.Timeouts.Boot, "powerdown": c.Timeouts.Powerdown,
		"quit": c.Timeouts.Quit, "request": c.Timeouts.Request, "restore": c.Timeouts.Restore} {
		if d.Duration <= 0 {
			return fmt.Errorf("timeouts.%s must be positive", name)
		}
	}
	return nil
}

// validate reports the first option that rules a VM template out. A
// template is saved with QEMU's migration, which refuses a VM with a 9p
// export mounted (the guest root over 9p) or a vhost-user device
// (virtio-fs), and the agent channel must be a serial port whose host end
// each clone has its own of.
func (f FactoryConfig) validate(c *Config) error {
	switch {
	case f.Dir == "" || !filepath.IsAbs(f.Dir):
		return fmt.Errorf("factory.dir %q: want an absolute path", f.Dir)
	case f.TCGTBSize < 0:
		return fmt.Errorf("factory.tcg_tb_size %d: must not be negative", f.TCGTBSize)
	case f.NICs < 0 || f.NICs > MaxTemplateNICs:
		return fmt.Errorf("factory.nics %d: want 0 to %d", f.NICs, MaxTemplateNICs)
	case !f.Template:
		return nil
	case c.Hypervisor.Initrd == "":
		return errors.New("factory.template needs hypervisor.initrd: a guest root over 9p (hypervisor.guest_root) cannot be saved in a template")
	case c.SharedFS.Type != SharedFS9P:
		return fmt.Errorf("factory.template needs shared_fs.type = %q: virtio-fs's vhost-user device cannot be saved in a template", SharedFS9P)
	case c.Agent.Transport != "virtio-serial":
		return errors.New("factory.template needs agent.transport = \"virtio-serial\"")
	}
	return nil
}
