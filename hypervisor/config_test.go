package hypervisor

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// validConfig is the smallest Config that passes Validate.
func validConfig() Config {
	return Config{
		Path:         "/usr/bin/qemu-system-x86_64",
		Machine:      "q35",
		Accel:        "tcg",
		CPUModel:     "max",
		VCPUs:        2,
		MemoryMiB:    512,
		Kernel:       "/usr/share/hull/vmlinuz",
		Initrd:       "/usr/share/hull/initrd.img",
		KernelParams: []string{"console=ttyS0", "quiet", "hull.port=hull.agent"},
		QMPSocket:    "/run/hull/sb1/qmp.sock",
		ConsoleLog:   "/run/hull/sb1/console.log",
		Agent: AgentDevice{
			Transport:  TransportSerial,
			SocketPath: "/run/hull/sb1/agent.sock",
			PortName:   "hull.agent",
		},
	}
}

func TestArgsGolden(t *testing.T) {
	tests := []struct {
		name   string
		config func(c *Config)
	}{
		{
			name: "q35_serial_9p",
			config: func(c *Config) {
				c.Share = &ShareDevice{Path: "/run/hull/sb1/shared", Tag: "hullshare"}
			},
		},
		{
			name: "q35_vsock",
			config: func(c *Config) {
				c.Accel, c.CPUModel = "kvm", "host"
				c.Agent = AgentDevice{Transport: TransportVsock, GuestCID: 42}
				c.Initrd = ""
			},
		},
		{
			name: "microvm",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Share = &ShareDevice{Path: "/run/hull/sb1/shared", Tag: "hullshare"}
			},
		},
		{
			name: "microvm_guest_root",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Initrd = ""
				c.RootDir = "/usr/local/share/hull/guest-root"
				c.Share = &ShareDevice{Path: "/run/hull/sb1/shared", Tag: "hullshare"}
			},
		},
		{
			name: "microvm_virtiofs",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Initrd = ""
				c.RootDir = "/usr/local/share/hull/guest-root"
				c.VirtioFS = &VirtioFSDevice{Socket: "/run/hull/sb1/virtiofsd.sock", Tag: "hullshare"}
			},
		},
		{
			name: "q35_virtiofs",
			config: func(c *Config) {
				c.VirtioFS = &VirtioFSDevice{Socket: "/run/hull/sb1/virtiofsd.sock", Tag: "hullshare"}
			},
		},
		{
			name: "nics",
			config: func(c *Config) {
				c.NICs = []NIC{
					{MAC: "52:54:00:12:34:56"},
					{MAC: "52:54:00:ab:cd:ef"},
				}
			},
		},
		{
			name: "confined_root",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Share = &ShareDevice{Path: "/run/hull/sb1/shared", Tag: "hullshare"}
				c.Confine = Confinement{Seccomp: true, Chroot: "/run/hull/sb1/qemu-root"}
			},
		},
		{
			name: "confined_user",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Confine = Confinement{Seccomp: true, Chroot: "/run/hull/sb1/qemu-root", User: "hull-qemu"}
			},
		},
		{
			name: "microvm_template",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Share = &ShareDevice{Path: "/run/hull-factory/t1/share", Tag: "hullshare"}
				c.RAM = &RAMFile{Path: "/run/hull-factory/t1/memory", Shared: true}
				c.Confine = Confinement{Seccomp: true}
			},
		},
		{
			name: "microvm_clone",
			config: func(c *Config) {
				c.Machine = "microvm"
				c.Share = &ShareDevice{Path: "/run/hull/sb1/shared", Tag: "hullshare"}
				c.RAM = &RAMFile{Path: "/run/hull-factory/t1/memory"}
				c.Incoming = true
				c.Confine = Confinement{Seccomp: true}
			},
		},
		{
			name: "comma_in_path",
			config: func(c *Config) {
				c.ConsoleLog = "/run/hull/a,b/console.log"
				c.Agent.SocketPath = "/run/hull/a,b/agent.sock"
				c.Share = &ShareDevice{Path: "/var/lib/x,y,,z/shared", Tag: "hullshare"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.config(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("test config does not validate: %v", err)
			}
			assertGolden(t, tt.name, c.Args())
		})
	}
}

// assertGolden compares args, one a line, with testdata/NAME.golden, which
// -update rewrites.
func assertGolden(t *testing.T, name string, args []string) {
	t.Helper()
	got := strings.Join(args, "\n") + "\n"
	golden := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("Args() differs from %s (run with -update if the change is intended)\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

// TestArgsProperties checks, independently of the golden files, the
// properties the golden files are meant to pin down, so that a careless
// -update cannot bless a broken command line.
func TestArgsProperties(t *testing.T) {
	t.Run("comma doubled in keyed values", func(t *testing.T) {
		c := validConfig()
		c.ConsoleLog = "/tmp/a,b/console.log"
		c.Agent.SocketPath = "/tmp/a,b/agent.sock"
		args := c.Args()
		assertArgPair(t, args, "-chardev", "file,id=console0,path=/tmp/a,,b/console.log")
		assertArgPair(t, args, "-chardev", "socket,id=agent0,path=/tmp/a,,b/agent.sock,server=on,wait=off")
	})
	t.Run("plain file arguments are not escaped", func(t *testing.T) {
		// -kernel, -initrd and -append take their value verbatim: QEMU
		// does not split them on commas, so doubling would corrupt them.
		c := validConfig()
		c.Kernel = "/boot/a,b/vmlinuz"
		c.KernelParams = []string{"x=1,2"}
		args := c.Args()
		assertArgPair(t, args, "-kernel", "/boot/a,b/vmlinuz")
		assertArgPair(t, args, "-append", "x=1,2")
	})
	t.Run("microvm uses virtio-mmio devices and the PIT", func(t *testing.T) {
		c := validConfig()
		c.Machine = "microvm"
		c.Share = &ShareDevice{Path: "/s", Tag: "t"}
		args := c.Args()
		assertArgPair(t, args, "-machine", "microvm,pit=on,pic=on,rtc=on,isa-serial=on,acpi=off")
		assertArgPair(t, args, "-accel", "tcg")
		for _, a := range args {
			if strings.Contains(a, "-pci") {
				t.Errorf("microvm command line has a PCI device: %q", a)
			}
		}
		assertArgPair(t, args, "-device", "virtio-9p-device,fsdev=share0,mount_tag=t")
		// No ACPI: the guest ends QEMU with a reboot, by triple fault.
		if cmdline := args[len(args)-1]; !strings.HasSuffix(cmdline, " reboot=t") || c.HasACPI() {
			t.Errorf("microvm: -append %q, HasACPI %v; want reboot=t and no ACPI", cmdline, c.HasACPI())
		}
	})
	t.Run("q35 keeps ACPI and the kernel's own reboot", func(t *testing.T) {
		c := validConfig()
		c.Machine = "q35"
		if cmdline := c.Args()[len(c.Args())-1]; strings.Contains(cmdline, "reboot=") || !c.HasACPI() {
			t.Errorf("q35: -append %q, HasACPI %v", cmdline, c.HasACPI())
		}
	})
	t.Run("virtio-fs puts guest RAM in a shared memfd of -m's size", func(t *testing.T) {
		for _, machine := range []string{"microvm", "q35"} {
			c := validConfig()
			c.Machine, c.MemoryMiB = machine, 384
			c.VirtioFS = &VirtioFSDevice{Socket: "/s,1/fs.sock", Tag: "t"}
			args := c.Args()
			assertArgPair(t, args, "-m", "384M")
			assertArgPair(t, args, "-object", "memory-backend-memfd,id=mem0,size=384M,share=on")
			assertArgPair(t, args, "-chardev", "socket,id=fs0,path=/s,,1/fs.sock")
			if m := c.MachineArgs()[1]; !strings.HasSuffix(m, ",memory-backend=mem0") {
				t.Errorf("%s: -machine %q does not use the shared backend", machine, m)
			}
		}
	})
	t.Run("virtio-fs on microvm is a modern virtio-mmio device", func(t *testing.T) {
		c := validConfig()
		c.Machine = "microvm"
		c.VirtioFS = &VirtioFSDevice{Socket: "/fs.sock", Tag: "t"}
		args := c.Args()
		// libvhost-user refuses legacy virtio, virtio-mmio's default.
		assertArgPair(t, args, "-global", "driver=virtio-mmio,property=force-legacy,value=false")
		assertArgPair(t, args, "-device", "vhost-user-fs-device,chardev=fs0,tag=t,queue-size=1024")
		c.Machine = "q35"
		assertArgPair(t, c.Args(), "-device", "vhost-user-fs-pci,chardev=fs0,tag=t,queue-size=1024")
	})
	t.Run("9p keeps private guest RAM", func(t *testing.T) {
		c := validConfig()
		c.Share = &ShareDevice{Path: "/s", Tag: "t"}
		for _, a := range c.Args() {
			if strings.Contains(a, "memory-backend") || strings.Contains(a, "force-legacy") {
				t.Errorf("9p-only command line has %q", a)
			}
		}
	})
	t.Run("a template's RAM is a shared file, a clone's a private mapping of it", func(t *testing.T) {
		for _, machine := range []string{"microvm", "q35"} {
			c := validConfig()
			c.Machine, c.MemoryMiB = machine, 384
			c.RAM = &RAMFile{Path: "/f,1/memory", Shared: true}
			assertArgPair(t, c.Args(), "-object", "memory-backend-file,id=mem0,size=384M,mem-path=/f,,1/memory,share=on")
			if m := c.MachineArgs()[1]; !strings.HasSuffix(m, ",memory-backend=mem0") {
				t.Errorf("%s: -machine %q does not use the file backend", machine, m)
			}
			c.RAM.Shared = false
			c.Incoming = true
			args := c.Args()
			assertArgPair(t, args, "-object", "memory-backend-file,id=mem0,size=384M,mem-path=/f,,1/memory,share=off")
			assertArgPair(t, args, "-incoming", "defer")
		}
	})
	t.Run("no -incoming for a boot", func(t *testing.T) {
		c := validConfig()
		c.RAM = &RAMFile{Path: "/f/memory", Shared: true}
		for _, a := range c.Args() {
			if a == "-incoming" {
				t.Error("-incoming present although Incoming is false")
			}
		}
	})
	t.Run("nic fds follow the stdio fds in order", func(t *testing.T) {
		c := validConfig()
		c.NICs = []NIC{{MAC: "52:54:00:00:00:01"}, {MAC: "52:54:00:00:00:02"}}
		args := c.Args()
		assertArgPair(t, args, "-netdev", "tap,id=net0,fd=3,vhost=off")
		assertArgPair(t, args, "-netdev", "tap,id=net1,fd=4,vhost=off")
		assertArgPair(t, args, "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:00:00:02")
	})
	t.Run("kernel params are one -append argument, last", func(t *testing.T) {
		c := validConfig()
		args := c.Args()
		if n := len(args); n < 2 || args[n-2] != "-append" || args[n-1] != "console=ttyS0 quiet hull.port=hull.agent" {
			t.Errorf("command line does not end with -append and the joined params: %q", args[max(0, len(args)-2):])
		}
	})
	t.Run("no initrd without one", func(t *testing.T) {
		c := validConfig()
		c.Initrd = ""
		for _, a := range c.Args() {
			if a == "-initrd" {
				t.Error("-initrd present although Initrd is empty")
			}
		}
	})
}

// TestArgsQMPSocketComma: -qmp's value is a chardev spec whose first,
// unnamed option is the socket path ("unix:PATH,server=on,..."), which QEMU
// splits on single commas, so a comma in QMPSocket must be doubled like any
// other option value.
func TestArgsQMPSocketComma(t *testing.T) {
	c := validConfig()
	c.QMPSocket = "/tmp/a,b/qmp.sock"
	assertArgPair(t, c.Args(), "-qmp", "unix:/tmp/a,,b/qmp.sock,server=on,wait=off")
}

// assertArgPair fails unless flag is immediately followed by value somewhere
// in args.
func assertArgPair(t *testing.T, args []string, flag, value string) {
	t.Helper()
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return
		}
	}
	t.Errorf("no %s %s in %q", flag, value, args)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string // substring; "" means valid
	}{
		{"valid serial", func(c *Config) {}, ""},
		{"valid vsock", func(c *Config) { c.Agent = AgentDevice{Transport: TransportVsock, GuestCID: 3} }, ""},
		{"valid kvm", func(c *Config) { c.Accel = "kvm" }, ""},
		{"no path", func(c *Config) { c.Path = "" }, "hypervisor path"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "kernel"},
		{"zero vcpus", func(c *Config) { c.VCPUs = 0 }, "vcpus"},
		{"too little memory", func(c *Config) { c.MemoryMiB = 63 }, "memory"},
		{"no qmp socket", func(c *Config) { c.QMPSocket = "" }, "qmp"},
		{"accel auto", func(c *Config) { c.Accel = "auto" }, `accel "auto"`},
		{"accel empty", func(c *Config) { c.Accel = "" }, `accel ""`},
		{"serial without socket", func(c *Config) { c.Agent.SocketPath = "" }, "virtio-serial"},
		{"serial without port name", func(c *Config) { c.Agent.PortName = "" }, "virtio-serial"},
		{"vsock reserved cid", func(c *Config) { c.Agent = AgentDevice{Transport: TransportVsock, GuestCID: 2} }, "cid 2"},
		{"unknown transport", func(c *Config) { c.Agent.Transport = "tcp" }, `transport "tcp"`},
		{"no transport", func(c *Config) { c.Agent.Transport = "" }, `transport ""`},
		{"valid virtio-fs", func(c *Config) { c.VirtioFS = &VirtioFSDevice{Socket: "/fs.sock", Tag: "t"} }, ""},
		{"virtio-fs without socket", func(c *Config) { c.VirtioFS = &VirtioFSDevice{Tag: "t"} }, "virtio-fs"},
		{"virtio-fs without tag", func(c *Config) { c.VirtioFS = &VirtioFSDevice{Socket: "/fs.sock"} }, "virtio-fs"},
		{"valid ram file", func(c *Config) { c.RAM = &RAMFile{Path: "/m", Shared: true} }, ""},
		{"ram file without path", func(c *Config) { c.RAM = &RAMFile{} }, "RAM file path"},
		{"ram file and virtio-fs", func(c *Config) {
			c.RAM = &RAMFile{Path: "/m"}
			c.VirtioFS = &VirtioFSDevice{Socket: "/fs.sock", Tag: "t"}
		}, "want one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error mentioning %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveAccel(t *testing.T) {
	tests := []struct {
		want         string
		wantName     string
		wantCPUModel string
	}{
		{"kvm", "kvm", "host"},
		{"tcg", "tcg", "max"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			// The device is never opened for an explicit choice.
			a, err := ResolveAccel(tt.want, "/nonexistent/kvm", time.Millisecond)
			if err != nil {
				t.Fatalf("ResolveAccel(%q) error: %v", tt.want, err)
			}
			if a.Name != tt.wantName || a.CPUModel != tt.wantCPUModel {
				t.Errorf("ResolveAccel(%q) = %+v, want name %q cpu %q", tt.want, a, tt.wantName, tt.wantCPUModel)
			}
		})
	}

	t.Run("bogus", func(t *testing.T) {
		if a, err := ResolveAccel("fast", "/nonexistent/kvm", time.Millisecond); err == nil {
			t.Errorf("ResolveAccel(fast) = %+v, want an error", a)
		}
	})

	for _, want := range []string{"auto", ""} {
		t.Run("fallback "+want, func(t *testing.T) {
			const dev = "/nonexistent/kvm"
			a, err := ResolveAccel(want, dev, time.Second)
			if err != nil {
				t.Fatalf("ResolveAccel(%q) error: %v", want, err)
			}
			if a.Name != "tcg" || a.CPUModel != "max" {
				t.Errorf("ResolveAccel(%q) without a KVM device = %+v, want tcg/max", want, a)
			}
			if !strings.Contains(a.Reason, dev) {
				t.Errorf("reason %q does not name %s", a.Reason, dev)
			}
		})
	}
}

func TestArgsTCGTranslationCache(t *testing.T) {
	c := validConfig()
	c.Accel, c.TBSizeMiB = "tcg", 32
	assertArgPair(t, c.Args(), "-accel", "tcg,tb-size=32")
	c.Accel = "kvm"
	assertArgPair(t, c.Args(), "-accel", "kvm")
}

// The bench's raw-boot floor renders the same machine as a sandbox.
func TestMachineArgsMatchArgs(t *testing.T) {
	for _, machine := range []string{"microvm", "q35"} {
		c := validConfig()
		c.Machine, c.Accel, c.TBSizeMiB = machine, "tcg", 16
		m := c.MachineArgs()
		if len(m) != 4 || m[0] != "-machine" || m[2] != "-accel" {
			t.Fatalf("MachineArgs() = %q, want -machine X -accel Y", m)
		}
		assertArgPair(t, c.Args(), "-machine", m[1])
		assertArgPair(t, c.Args(), "-accel", m[3])
	}
}

func TestGuestRootOrInitrd(t *testing.T) {
	c := validConfig()
	c.RootDir = "/srv/root"
	if err := c.Validate(); err == nil {
		t.Errorf("Validate() with both a root dir and an initrd: want an error")
	}
	c.Initrd = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() with a root dir: %v", err)
	}
	args := c.Args()
	assertArgPair(t, args, "-fsdev", "local,id=root0,path=/srv/root,security_model=none,readonly=on")
	if cmdline := args[len(args)-1]; !strings.Contains(cmdline, " root=hullroot rootfstype=9p ") || !strings.HasSuffix(cmdline, " ro init=/init") {
		t.Errorf("-append %q: want the 9p root, read-only", cmdline)
	}
	for _, a := range args {
		if a == "-initrd" {
			t.Errorf("a root dir and -initrd: %q", args)
		}
	}
}
