package pod

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// repoConfig is the documented configuration.toml at the repository root.
const repoConfig = "../configuration.toml"

func TestParseRepoConfig(t *testing.T) {
	b, err := os.ReadFile(repoConfig)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s does not exist yet", repoConfig)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig(b); err != nil {
		t.Fatalf("ParseConfig(%s): %v", repoConfig, err)
	}

	// The file is the reference for every option.
	assertDocumented(t, repoConfig, string(b))
}

// assertDocumented fails unless each key of Config appears in its section
// of text, set or commented out.
func assertDocumented(t *testing.T, name, text string) {
	t.Helper()
	for section, keys := range configKeys(t) {
		at := regexp.MustCompile(`(?m)^\s*\[` + regexp.QuoteMeta(section) + `\]`).FindStringIndex(text)
		if at == nil {
			t.Errorf("%s has no [%s] section", name, section)
			continue
		}
		body := text[at[1]:]
		if next := regexp.MustCompile(`(?m)^\s*\[`).FindStringIndex(body); next != nil {
			body = body[:next[0]]
		}
		for _, key := range keys {
			if !regexp.MustCompile(`(?m)^\s*#?\s*` + regexp.QuoteMeta(key) + `\s*=`).MatchString(body) {
				t.Errorf("%s does not document %s.%s", name, section, key)
			}
		}
	}
}

// configKeys lists the TOML keys of Config by section, from the encoding
// of the defaults.
func configKeys(t *testing.T) map[string][]string {
	t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for section, kv := range m {
		for k := range kv {
			keys[section] = append(keys[section], k)
		}
	}
	return keys
}

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
}

// TestDefaultConfigRoundTrip: the defaults written as TOML read back as the
// defaults, so the tags and Duration's text form agree.
func TestDefaultConfigRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(buf.Bytes())
	if err != nil {
		t.Fatalf("ParseConfig(encoded defaults): %v\n%s", err, buf.String())
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the defaults:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestParseConfigMinimal(t *testing.T) {
	got, err := ParseConfig([]byte(`
[hypervisor]
accel = "tcg"
default_vcpus = 2

[timeouts]
boot = "90s"
`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := DefaultConfig()
	want.Hypervisor.Accel = "tcg"
	want.Hypervisor.DefaultVCPUs = 2
	want.Timeouts.Boot = Duration{90 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseConfig = %+v\nwant the defaults with three options changed: %+v", got, want)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	got, err := ParseConfig(nil)
	if err != nil {
		t.Fatalf("ParseConfig(empty): %v", err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseConfig(empty) = %+v, want the defaults", got)
	}
}

// A file naming only an initrd boots from it, not from the default root.
func TestParseConfigInitrdReplacesGuestRoot(t *testing.T) {
	cfg, err := ParseConfig([]byte("[hypervisor]\ninitrd = \"/i.img\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hypervisor.GuestRoot != "" || cfg.Hypervisor.Initrd != "/i.img" {
		t.Errorf("guest_root %q, initrd %q; want the initrd only", cfg.Hypervisor.GuestRoot, cfg.Hypervisor.Initrd)
	}
	if d := DefaultConfig(); d.Hypervisor.GuestRoot == "" || d.Hypervisor.Initrd != "" {
		t.Errorf("defaults: guest_root %q, initrd %q; want the guest root only", d.Hypervisor.GuestRoot, d.Hypervisor.Initrd)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // a substring of the error
	}{
		{"unknown key", "[hypervisor]\nturbo = true\n", "hypervisor.turbo"},
		{"unknown section", "[gpu]\nenabled = true\n", "gpu"},
		{"key in the wrong section", "[agent]\naccel = \"tcg\"\n", "agent.accel"},
		{"bad duration", "[timeouts]\nqmp = \"ten seconds\"\n", "ten seconds"},
		{"duration as a number", "[timeouts]\nqmp = 10\n", "qmp"},
		{"zero duration", "[timeouts]\nquit = \"0s\"\n", "timeouts.quit"},
		{"negative duration", "[timeouts]\nrequest = \"-1s\"\n", "timeouts.request"},
		{"accel fast", "[hypervisor]\naccel = \"fast\"\n", `hypervisor.accel "fast"`},
		{"machine pc", "[hypervisor]\nmachine = \"pc\"\n", `hypervisor.machine "pc"`},
		{"zero vcpus", "[hypervisor]\ndefault_vcpus = 0\n", "default_vcpus"},
		{"too many vcpus", "[hypervisor]\ndefault_vcpus = 65\n", "default_vcpus"},
		{"too little memory", "[hypervisor]\ndefault_memory = 32\n", "default_memory"},
		{"negative overhead", "[hypervisor]\nmemory_overhead = -1\n", "memory_overhead"},
		{"empty path", "[hypervisor]\npath = \"\"\n", "hypervisor.path"},
		{"unknown shared fs", "[shared_fs]\ntype = \"nfs\"\n", `shared_fs.type "nfs"`},
		{"virtio-fs without virtiofsd", "[shared_fs]\ntype = \"virtio-fs\"\nvirtiofsd = \"\"\n", "shared_fs.virtiofsd"},
		{"tag too long", "[shared_fs]\ntag = \"" + strings.Repeat("t", 32) + "\"\n", "shared_fs.tag"},
		{"unknown transport", "[agent]\ntransport = \"tcp\"\n", "agent.transport"},
		{"vsock without port", "[agent]\ntransport = \"vsock\"\nvsock_port = 0\n", "agent.vsock_port"},
		{"serial without port name", "[agent]\nport_name = \"\"\n", "agent.port_name"},
		{"guest root and initrd", "[hypervisor]\nguest_root = \"/r\"\ninitrd = \"/i.img\"\n", "set exactly one"},
		{"no guest image", "[hypervisor]\nguest_root = \"\"\n", "set exactly one"},
		{"zero restore timeout", "[timeouts]\nrestore = \"0s\"\n", "timeouts.restore"},
		{"relative factory dir", "[factory]\ndir = \"factory\"\n", "factory.dir"},
		{"template over a 9p guest root", "[factory]\ntemplate = true\n[shared_fs]\ntype = \"virtio-9p\"\n", "hypervisor.initrd"},
		{"template with virtio-fs", "[factory]\ntemplate = true\n[hypervisor]\ninitrd = \"/i.img\"\n", "virtio-9p"},
		{"template over vsock", "[factory]\ntemplate = true\n[hypervisor]\ninitrd = \"/i.img\"\n[shared_fs]\ntype = \"virtio-9p\"\n[agent]\ntransport = \"vsock\"\n", "virtio-serial"},
		{"malformed", "[hypervisor\naccel = \"tcg\"\n", ""},
		{"string for int", "[hypervisor]\ndefault_vcpus = \"two\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.toml))
			if err == nil {
				t.Fatalf("ParseConfig succeeded on:\n%s", tt.toml)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseConfig error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// A VM template needs an initrd and the 9p share: what QEMU can save.
func TestParseConfigTemplate(t *testing.T) {
	cfg, err := ParseConfig([]byte("[factory]\ntemplate = true\n[hypervisor]\ninitrd = \"/i.img\"\n[shared_fs]\ntype = \"virtio-9p\"\n"))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if !cfg.Factory.Template || cfg.Factory.Dir != DefaultFactoryDir || cfg.Factory.NICs != 1 {
		t.Errorf("factory = %+v, want the template on in %s with 1 NIC", cfg.Factory, DefaultFactoryDir)
	}
	for _, bad := range []string{"nics = -1", "nics = 9", "tcg_tb_size = -1"} {
		_, err := ParseConfig([]byte("[factory]\n" + bad + "\n"))
		if key, _, _ := strings.Cut(bad, " "); err == nil || !strings.Contains(err.Error(), "factory."+key) {
			t.Errorf("factory.%s: err %v, want it refused", bad, err)
		}
	}
}

// writeConfig writes a configuration file that sets accel and returns its path.
func writeConfig(t *testing.T, accel string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(path, []byte("[hypervisor]\naccel = \""+accel+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	flagPath := writeConfig(t, "kvm")
	envPath := writeConfig(t, "tcg")
	missing := filepath.Join(t.TempDir(), "missing.toml")

	t.Run("flag beats env", func(t *testing.T) {
		c, err := LoadConfig(flagPath, envPath)
		if err != nil {
			t.Fatal(err)
		}
		if c.Hypervisor.Accel != "kvm" || c.Source != flagPath {
			t.Errorf("LoadConfig(flag, env) = accel %q from %q, want kvm from %s", c.Hypervisor.Accel, c.Source, flagPath)
		}
	})
	t.Run("env without flag", func(t *testing.T) {
		c, err := LoadConfig("", envPath)
		if err != nil {
			t.Fatal(err)
		}
		if c.Hypervisor.Accel != "tcg" || c.Source != envPath {
			t.Errorf("LoadConfig(\"\", env) = accel %q from %q, want tcg from %s", c.Hypervisor.Accel, c.Source, envPath)
		}
	})
	t.Run("missing flag file", func(t *testing.T) {
		// An explicit file must exist; there is no falling back to the
		// environment's.
		_, err := LoadConfig(missing, envPath)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadConfig(missing, env) = %v, want an error wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("missing env file", func(t *testing.T) {
		_, err := LoadConfig("", missing)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadConfig(\"\", missing) = %v, want an error wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("invalid file names its path", func(t *testing.T) {
		bad := writeConfig(t, "fast")
		_, err := LoadConfig(bad, "")
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("LoadConfig(invalid) = %v, want an error naming %s", err, bad)
		}
	})
	t.Run("defaults without any file", func(t *testing.T) {
		for _, p := range []string{DefaultConfigPath, InstalledConfig} {
			if _, err := os.Stat(p); err == nil {
				t.Skipf("%s exists on this machine", p)
			}
		}
		c, err := LoadConfig("", "")
		if err != nil {
			t.Fatal(err)
		}
		if want := DefaultConfig(); !reflect.DeepEqual(c, want) {
			t.Errorf("LoadConfig(\"\", \"\") = %+v, want the defaults", c)
		}
	})
}
