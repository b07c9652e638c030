package pod

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/hypervisor"
)

// Check is one host requirement and whether it holds.
type Check struct {
	Name string
	OK   bool
	// Required checks make `hull check` fail; the others inform.
	Required bool
	Detail   string
	Fix      string
}

// CheckHost tells whether this host can run hull (of version hullVersion)
// with cfg, and why not; systemdCgroup is the CLI's --systemd-cgroup.
func CheckHost(cfg Config, hullVersion string, systemdCgroup bool) []Check {
	h := cfg.Hypervisor
	var out []Check
	add := func(c Check) { out = append(out, c) }

	if b, err := exec.Command(h.Path, "--version").Output(); err != nil {
		add(Check{Name: "qemu", Required: true, Detail: fmt.Sprintf("%s: %v", h.Path, err), Fix: "apt-get install qemu-system-x86, or set hypervisor.path"})
	} else {
		add(Check{Name: "qemu", Required: true, OK: true, Detail: strings.SplitN(string(b), "\n", 2)[0]})
	}
	fsd := Check{Name: "virtiofsd", Required: cfg.SharedFS.Type == SharedFSVirtioFS}
	if b, err := exec.Command(cfg.SharedFS.Virtiofsd, "--version").Output(); err != nil {
		fsd.Detail = fmt.Sprintf("%s: %v: the share can only be virtio-9p", cfg.SharedFS.Virtiofsd, err)
		fsd.Fix = "apt-get install qemu-system-common, or set shared_fs.virtiofsd (only needed for shared_fs.type = virtio-fs)"
	} else {
		fsd.OK, fsd.Detail = true, strings.SplitN(string(b), "\n", 2)[0]+"; shared_fs is "+cfg.SharedFS.Type
	}
	add(fsd)
	pr := hypervisor.ProbeKVM(h.KVMDevice, h.KVMProbeLimit.Duration)
	accel := Check{Name: "kvm", OK: pr.Usable, Detail: pr.Reason}
	if !pr.Usable {
		accel.Fix = "none needed: accel=auto falls back to TCG (software emulation, much slower); for KVM use a host with working hardware virtualization"
	}
	add(accel)
	image, imageKey := h.GuestRoot, "guest_root"
	if image == "" {
		image, imageKey = h.Initrd, "initrd"
	}
	for _, f := range []struct{ name, key, path string }{{"kernel", "kernel", h.Kernel}, {"image", imageKey, image}} {
		c := Check{Name: "guest " + f.name, Required: true}
		if fi, err := os.Stat(f.path); err != nil {
			c.Detail, c.Fix = err.Error(), "run `make guest && make install`, or set hypervisor."+f.key
		} else if fi.IsDir() {
			c.OK, c.Detail = true, f.path+" (directory, shared read-only over 9p)"
		} else {
			c.OK, c.Detail = true, fmt.Sprintf("%s (%d bytes)", f.path, fi.Size())
		}
		add(c)
	}
	av := Check{Name: "agent version", Required: true}
	if b, err := guestImageFile(h, "etc/hull-version"); err != nil {
		av.Detail, av.Fix = fmt.Sprintf("cannot read the agent version from %s: %v", image, err), "rebuild the guest image: make initrd && make install"
	} else if v := strings.TrimSpace(string(b)); v != hullVersion {
		av.Detail, av.Fix = fmt.Sprintf("guest image carries agent %s, hull is %s", v, hullVersion), "rebuild and install both: make && make install"
	} else {
		av.OK, av.Detail = true, "guest agent matches hull "+v
	}
	add(av)
	vs := Check{Name: "vhost-vsock", Required: cfg.Agent.Transport == "vsock"}
	if _, err := os.Stat("/dev/vhost-vsock"); err != nil {
		vs.Detail, vs.Fix = "/dev/vhost-vsock missing: the agent talks over virtio-serial", "modprobe vhost_vsock (only needed for agent.transport=vsock)"
	} else {
		vs.OK, vs.Detail = true, "/dev/vhost-vsock present"
	}
	add(vs)
	tun := Check{Name: "tun", Required: true}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		tun.Detail, tun.Fix = err.Error(), "modprobe tun (taps carry the container network into the VM)"
	} else {
		tun.OK, tun.Detail = true, "/dev/net/tun present"
	}
	add(tun)
	pf := Check{Name: "port forward"}
	if path, err := exec.LookPath("iptables"); err != nil {
		pf.Detail, pf.Fix = "iptables missing: kubectl port-forward cannot reach a pod", "apt-get install iptables"
	} else {
		pf.OK, pf.Detail = true, path+" redirects localhost in a pod's network namespace to the VM"
	}
	add(pf)
	cg := Check{Name: "cgroups", OK: true}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg.Detail = "cgroup v2 (unified)"
	} else {
		cg.Detail = "cgroup v1"
	}
	add(cg)
	add(checkCgroupDriver(systemdCgroup))
	mem := Check{Name: "memory", Required: true}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var avail int
		for _, l := range bytes.Split(b, []byte("\n")) {
			if bytes.HasPrefix(l, []byte("MemAvailable:")) {
				fmt.Sscanf(string(l), "MemAvailable: %d kB", &avail)
			}
		}
		mem.OK = avail/1024 >= h.DefaultMemory
		mem.Detail = fmt.Sprintf("%d MiB available, default_memory is %d MiB", avail/1024, h.DefaultMemory)
		if !mem.OK {
			mem.Fix = "free memory or lower hypervisor.default_memory"
		}
	}
	add(mem)
	add(checkConfinement(cfg))
	return out
}

// checkConfinement reports how far QEMU is confined and why not further.
// A configured user that does not exist fails: QEMU would refuse to start.
func checkConfinement(cfg Config) Check {
	conf, why := QEMUConfinement(cfg, "<sandbox>")
	c := Check{Name: "qemu confinement", Required: conf.User != "", OK: true}
	var parts []string
	if conf.Seccomp {
		parts = append(parts, "seccomp filter")
	}
	if conf.Chroot != "" {
		parts = append(parts, "empty chroot")
	}
	if conf.User != "" {
		if _, err := user.Lookup(conf.User); err != nil {
			c.OK, c.Fix = false, fmt.Sprintf("create the user (make install, deploy/node-setup.sh, or useradd --system %s), or set hypervisor.qemu_user = \"\"", conf.User)
			parts = append(parts, fmt.Sprintf("user %s: %v", conf.User, err))
		} else {
			parts = append(parts, "user "+conf.User+", no capabilities")
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	c.Detail = strings.Join(parts, ", ")
	if len(why) > 0 {
		c.Detail += "; not applied: " + strings.Join(why, "; ")
	}
	return c
}

// guestImageFile reads one file of the guest image, a directory or an
// initrd.
func guestImageFile(h HypervisorConfig, name string) ([]byte, error) {
	if h.GuestRoot != "" {
		return os.ReadFile(filepath.Join(h.GuestRoot, name))
	}
	return InitrdFile(h.Initrd, name)
}

// checkCgroupDriver tells which cgroup driver the CLI will use and why, and
// the shim's rule beside it.
func checkCgroupDriver(systemdCgroup bool) Check {
	c := Check{Name: "cgroup driver", Required: true}
	choice, err := CLICgroupDriver(systemdCgroup)
	if err != nil {
		c.Detail, c.Fix = err.Error(), "drop --systemd-cgroup (CRI-O: cgroup_manager = \"cgroupfs\"; containerd: SystemdCgroup = false), or run on a host that systemd booted"
		return c
	}
	shim := "cgroupfs"
	if SystemdBooted() {
		shim = "systemd"
	}
	c.OK = true
	c.Detail = fmt.Sprintf("%s: %s; the containerd shim uses %s for a cgroupsPath in systemd form", choice.Driver, choice.Why, shim)
	return c
}
