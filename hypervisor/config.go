// Package hypervisor starts and steers the QEMU process of one sandbox: it
// builds QEMU's command line from typed device descriptions, drives QEMU over
// QMP, and probes whether KVM is worth using. It knows nothing of containers.
package hypervisor

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Config describes one VM. Every path is on the host.
type Config struct {
	// Path is the QEMU binary.
	Path string
	// Machine is QEMU's machine type ("q35", "microvm").
	Machine string
	// Accel is "kvm" or "tcg"; resolve "auto" with ResolveAccel first.
	Accel string
	// CPUModel is passed to -cpu ("max", "host").
	CPUModel  string
	VCPUs     int
	MemoryMiB int
	// TBSizeMiB caps TCG's translation cache (0: QEMU's default, which
	// grows to tens of MiB per VM); unused under KVM.
	TBSizeMiB int

	Kernel string
	// Initrd is the guest's initrd; RootDir, when set, is used instead.
	Initrd string
	// RootDir is a host directory the guest kernel mounts as its root file
	// system, read-only over virtio-9p, instead of unpacking an initrd: no
	// copy of the image in guest memory, no unpacking at boot, and the
	// host's page cache of the image is shared by every VM. The kernel
	// needs 9p built in.
	RootDir      string
	KernelParams []string

	// QMPSocket is where QEMU listens for QMP.
	QMPSocket string
	// ConsoleLog receives the guest's serial console.
	ConsoleLog string

	Agent AgentDevice
	// Share, when set, exports a host directory over virtio-9p.
	Share *ShareDevice
	// VirtioFS, when set, attaches a virtio-fs device served by virtiofsd
	// over vhost-user. virtiofsd then maps guest RAM, so the RAM becomes a
	// shared memory backend.
	VirtioFS *VirtioFSDevice
	// NICs are virtio-net devices on already-open tap devices.
	NICs []NIC

	// RAM, when set, puts guest RAM in a file (on tmpfs) rather than in
	// anonymous memory: the RAM of a template, or a clone's copy-on-write
	// view of it (see SaveState and Restore).
	RAM *RAMFile
	// Incoming starts QEMU waiting for a saved state (Restore) instead of
	// booting the kernel.
	Incoming bool

	// Confine is what QEMU gives up once it has opened its files.
	Confine Confinement
}

// AgentDevice is the host end of the agent channel.
type AgentDevice struct {
	// Transport is "virtio-serial" or "vsock".
	Transport string
	// SocketPath is the unix socket QEMU serves the virtio-serial port on.
	SocketPath string
	// PortName is the virtio-serial port's name, as the guest sees it.
	PortName string
	// GuestCID is the guest's vsock context ID.
	GuestCID uint32
}

// ShareDevice is a directory exported to the guest over virtio-9p.
type ShareDevice struct {
	Path string
	Tag  string
}

// VirtioFSDevice is a virtio-fs device whose file server is a vhost-user
// backend (virtiofsd) listening on Socket.
type VirtioFSDevice struct {
	Socket string
	Tag    string
}

// NIC is a virtio-net device backed by a tap file descriptor that QEMU
// inherits.
type NIC struct {
	Tap *os.File
	MAC string
}

// RAMFile is guest RAM backed by a file.
type RAMFile struct {
	Path string
	// Shared writes guest RAM through to the file: a template's RAM, which
	// SaveState then leaves out of the saved state. Otherwise the file is
	// mapped copy-on-write: the guest starts from its pages and what it
	// writes stays private to this VM, as a clone's must.
	Shared bool
}

// Transports the agent can use.
const (
	TransportSerial = "virtio-serial"
	TransportVsock  = "vsock"
)

// agentPortID is the QEMU device id of the agent's virtio-serial port; QMP
// reports VSERPORT_CHANGE events under it.
const agentPortID = "agent-port"

// Validate reports the first setting QEMU could not start with.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("hypervisor path is empty")
	case c.Kernel == "":
		return fmt.Errorf("guest kernel path is empty")
	case c.VCPUs < 1:
		return fmt.Errorf("vcpus must be at least 1, got %d", c.VCPUs)
	case c.MemoryMiB < 64:
		return fmt.Errorf("memory must be at least 64 MiB, got %d", c.MemoryMiB)
	case c.QMPSocket == "":
		return fmt.Errorf("qmp socket path is empty")
	case c.Accel != "kvm" && c.Accel != "tcg":
		return fmt.Errorf("accel %q: want kvm or tcg", c.Accel)
	case c.RootDir != "" && c.Initrd != "":
		return fmt.Errorf("guest root %s and initrd %s: want one of them", c.RootDir, c.Initrd)
	case c.VirtioFS != nil && (c.VirtioFS.Socket == "" || c.VirtioFS.Tag == ""):
		return fmt.Errorf("virtio-fs device needs a vhost-user socket and a tag")
	case c.RAM != nil && c.VirtioFS != nil:
		// virtiofsd needs RAM in a shared memfd, and a vhost-user device
		// cannot be saved.
		return fmt.Errorf("guest RAM in a file and a virtio-fs device: want one of them")
	case c.RAM != nil && c.RAM.Path == "":
		return fmt.Errorf("guest RAM file path is empty")
	}
	switch c.Agent.Transport {
	case TransportSerial:
		if c.Agent.SocketPath == "" || c.Agent.PortName == "" {
			return fmt.Errorf("virtio-serial agent needs a socket path and a port name")
		}
	case TransportVsock:
		if c.Agent.GuestCID < 3 {
			return fmt.Errorf("vsock guest cid %d: must be 3 or more", c.Agent.GuestCID)
		}
	default:
		return fmt.Errorf("agent transport %q: want %s or %s", c.Agent.Transport, TransportSerial, TransportVsock)
	}
	return nil
}

// device is one QEMU option and its value, kept typed until rendered.
type device struct {
	flag  string
	props []prop
}

type prop struct{ key, value string }

func (d device) render() []string {
	parts := make([]string, 0, len(d.props))
	for _, p := range d.props {
		if p.key == "" {
			parts = append(parts, p.value)
			continue
		}
		parts = append(parts, p.key+"="+qemuEscape(p.value))
	}
	return []string{d.flag, strings.Join(parts, ",")}
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func p(key, value string) prop { return prop{key, value} }

// Args renders QEMU's command line (without the binary). The tap files of
// NICs are expected as fds 3, 4, … in the child, in order.
func (c *Config) Args() []string {
	devs := []device{
		{"-name", []prop{p("", "hull"), p("debug-threads", "on")}},
		{"-machine", c.machine()},
		{"-accel", c.accel()},
		{"-cpu", []prop{p("", c.CPUModel)}},
		{"-smp", []prop{p("", strconv.Itoa(c.VCPUs))}},
		{"-m", []prop{p("", strconv.Itoa(c.MemoryMiB)+"M")}},
		{"-qmp", []prop{p("", "unix:"+qemuEscape(c.QMPSocket)), p("server", "on"), p("wait", "off")}},
		{"-chardev", []prop{p("", "file"), p("id", "console0"), p("path", c.ConsoleLog)}},
		{"-serial", []prop{p("", "chardev:console0")}},
		{"-kernel", []prop{p("", c.Kernel)}},
	}
	if c.Initrd != "" {
		devs = append(devs, device{"-initrd", []prop{p("", c.Initrd)}})
	}
	// The machine's RAM (-machine memory-backend=), of -m's size.
	size := strconv.Itoa(c.MemoryMiB) + "M"
	switch {
	case c.sharedMemory():
		devs = append(devs, device{"-object", []prop{p("", "memory-backend-memfd"), p("id", memoryBackendID),
			p("size", size), p("share", "on")}})
	case c.RAM != nil:
		// share=off maps the file privately (MAP_PRIVATE): copy-on-write.
		devs = append(devs, device{"-object", []prop{p("", "memory-backend-file"), p("id", memoryBackendID),
			p("size", size), p("mem-path", c.RAM.Path), p("share", onOff(c.RAM.Shared))}})
	}
	devs = append(devs,
		device{"-object", []prop{p("", "rng-random"), p("id", "rng0"), p("filename", "/dev/urandom")}},
		device{"-device", []prop{p("", c.bus("virtio-rng")), p("rng", "rng0")}},
	)
	switch c.Agent.Transport {
	case TransportSerial:
		devs = append(devs,
			device{"-device", []prop{p("", c.bus("virtio-serial")), p("id", "vser0")}},
			device{"-chardev", []prop{p("", "socket"), p("id", "agent0"), p("path", c.Agent.SocketPath), p("server", "on"), p("wait", "off")}},
			device{"-device", []prop{p("", "virtserialport"), p("bus", "vser0.0"), p("chardev", "agent0"), p("name", c.Agent.PortName), p("id", agentPortID)}},
		)
	case TransportVsock:
		devs = append(devs, device{"-device", []prop{p("", c.bus("vhost-vsock")), p("guest-cid", strconv.FormatUint(uint64(c.Agent.GuestCID), 10))}})
	}
	if c.RootDir != "" {
		devs = append(devs,
			device{"-fsdev", []prop{p("", "local"), p("id", "root0"), p("path", c.RootDir), p("security_model", "none"), p("readonly", "on")}},
			device{"-device", []prop{p("", c.bus("virtio-9p")), p("fsdev", "root0"), p("mount_tag", RootTag)}},
		)
	}
	if c.Share != nil {
		devs = append(devs,
			device{"-fsdev", []prop{p("", "local"), p("id", "share0"), p("path", c.Share.Path), p("security_model", "none"), p("multidevs", "remap")}},
			device{"-device", []prop{p("", c.bus("virtio-9p")), p("fsdev", "share0"), p("mount_tag", c.Share.Tag)}},
		)
	}
	if c.VirtioFS != nil {
		if c.Machine == "microvm" {
			// virtio-mmio defaults to the legacy (pre-1.0) interface,
			// which vhost-user back ends refuse.
			devs = append(devs, device{"-global", []prop{p("driver", "virtio-mmio"), p("property", "force-legacy"), p("value", "false")}})
		}
		// A long queue lets one FUSE request carry up to 1 MiB: each is
		// a round trip to virtiofsd.
		devs = append(devs,
			device{"-chardev", []prop{p("", "socket"), p("id", "fs0"), p("path", c.VirtioFS.Socket)}},
			device{"-device", []prop{p("", c.bus("vhost-user-fs")), p("chardev", "fs0"), p("tag", c.VirtioFS.Tag), p("queue-size", "1024")}},
		)
	}
	for i, nic := range c.NICs {
		id := "net" + strconv.Itoa(i)
		devs = append(devs,
			device{"-netdev", []prop{p("", "tap"), p("id", id), p("fd", strconv.Itoa(3+i)), p("vhost", "off")}},
			device{"-device", []prop{p("", c.bus("virtio-net")), p("netdev", id), p("mac", nic.MAC)}},
		)
	}
	devs = append(devs, c.Confine.devices()...)
	if c.Incoming {
		// The state comes later, over QMP (Restore).
		devs = append(devs, device{"-incoming", []prop{p("", "defer")}})
	}
	args := []string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"}
	for _, d := range devs {
		args = append(args, d.render()...)
	}
	return append(args, "-append", c.KernelCmdline())
}

// KernelCmdline is the guest kernel's command line: KernelParams and what
// the machine type calls for.
func (c *Config) KernelCmdline() string {
	return strings.Join(append(slices.Clone(c.KernelParams), c.machineKernelParams()...), " ")
}

// RootTag is the 9p mount tag of RootDir.
const RootTag = "hullroot"

// rootKernelParams mount RootDir as the root file system: read-only, with
// the page cache on (the image does not change under a running guest) and
// large messages, so that paging the agent in takes few round trips.
var rootKernelParams = []string{"root=" + RootTag, "rootfstype=9p",
	"rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=512000", "ro", "init=/init"}

// machineKernelParams are the kernel parameters the machine type and the
// root file system call for.
func (c *Config) machineKernelParams() []string {
	var params []string
	if c.RootDir != "" {
		params = append(params, rootKernelParams...)
	}
	if c.Machine == "microvm" {
		// Without ACPI the guest cannot power off; it reboots, which
		// -no-reboot turns into QEMU's exit. A triple fault is the one
		// reboot method that needs neither ACPI nor a keyboard controller:
		// the others are tried first and time out (~3 s).
		params = append(params, "reboot=t")
	}
	return params
}

// HasACPI reports whether the guest sees ACPI, and with it the power
// button that QMP system_powerdown presses.
func (c *Config) HasACPI() bool { return c.Machine != "microvm" }

// MachineArgs renders only the -machine and -accel options of Args.
func (c *Config) MachineArgs() []string {
	return append(device{"-machine", c.machine()}.render(), device{"-accel", c.accel()}.render()...)
}

// memoryBackendID names guest RAM's memory backend when it is not
// QEMU's anonymous memory. A clone's must be named as its template's was:
// the saved state refers to RAM blocks by name.
const memoryBackendID = "mem0"

// sharedMemory reports whether guest RAM must be a shared memory backend:
// a vhost-user backend (virtiofsd) reads and writes guest buffers in place.
func (c *Config) sharedMemory() bool { return c.VirtioFS != nil }

func (c *Config) machine() []prop {
	props := []prop{p("", c.Machine)}
	if c.Machine == "q35" {
		// Devices the guest never uses but would probe at every boot.
		props = append(props, p("sata", "off"), p("smbus", "off"), p("vmport", "off"), p("i8042", "off"), p("graphics", "off"))
	}
	if c.Machine == "microvm" {
		// The PIT is the guest's tick under TCG (see tcgKernelParams).
		// Linux takes ACPI on microvm for hardware-reduced ACPI and then
		// never sets up the PIT, so microvm runs without ACPI: devices
		// come from the kernel command line, power-off is a reboot (see
		// machineKernelParams). Without the legacy PIC, Linux has no IRQ 0
		// for the PIT when it asks for one.
		props = append(props, p("pit", "on"), p("pic", "on"), p("rtc", "on"), p("isa-serial", "on"), p("acpi", "off"))
	}
	if c.sharedMemory() || c.RAM != nil {
		props = append(props, p("memory-backend", memoryBackendID))
	}
	return props
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (c *Config) accel() []prop {
	props := []prop{p("", c.Accel)}
	if c.Accel == "tcg" && c.TBSizeMiB > 0 {
		props = append(props, p("tb-size", strconv.Itoa(c.TBSizeMiB)))
	}
	return props
}

// bus picks the transport flavour of a virtio device for the machine type.
func (c *Config) bus(kind string) string {
	if c.Machine == "microvm" {
		return kind + "-device"
	}
	return kind + "-pci"
}
