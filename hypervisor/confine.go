package hypervisor

// Confinement narrows what a compromised QEMU can reach: QEMU is the second
// wall after the guest kernel. Each part applies once QEMU has opened what
// it needs (its kernel, sockets, taps, share), just before the VM runs.
type Confinement struct {
	// Seccomp turns on QEMU's seccomp filter: no obsolete system calls, no
	// process spawning, no resource or scheduler control and, while QEMU
	// keeps uid 0, no set*id calls.
	Seccomp bool
	// Chroot is an empty directory QEMU chroots into.
	Chroot string
	// User is the unprivileged user QEMU switches to, leaving uid 0 and
	// every capability behind. Empty keeps root: a 9p file server needs
	// root's access to the files it serves.
	User string
}

// ElevatePrivilegesDenied reports whether the seccomp filter denies the
// set*id calls. QEMU 7.2 installs its filter before -runas switches user,
// and the switch needs those calls: with a User they stay allowed (after
// the switch QEMU has neither uid 0 nor capabilities, so they cannot raise
// it again).
func (c Confinement) ElevatePrivilegesDenied() bool { return c.Seccomp && c.User == "" }

func (c Confinement) devices() []device {
	var devs []device
	if c.Seccomp {
		elevate := "deny"
		if !c.ElevatePrivilegesDenied() {
			elevate = "allow"
		}
		devs = append(devs, device{"-sandbox", []prop{p("", "on"), p("obsolete", "deny"),
			p("elevateprivileges", elevate), p("spawn", "deny"), p("resourcecontrol", "deny")}})
	}
	if c.Chroot != "" {
		devs = append(devs, device{"-chroot", []prop{p("", c.Chroot)}})
	}
	if c.User != "" {
		devs = append(devs, device{"-runas", []prop{p("", c.User)}})
	}
	return devs
}
