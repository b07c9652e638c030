package pod

import (
	"path/filepath"

	"github.com/hull-runtime/hull/hypervisor"
)

// QEMUConfinement is how far the configuration lets QEMU be confined in a
// sandbox directory, and, for each configured part that cannot apply, why.
// Nothing configured is dropped without a reason: `hull check` prints them
// and the monitor logs them.
func QEMUConfinement(c Config, sandboxDir string) (hypervisor.Confinement, []string) {
	h := c.Hypervisor
	conf := hypervisor.Confinement{Seccomp: h.Seccomp}
	var why []string
	if !h.Seccomp {
		why = append(why, "seccomp: off in the configuration")
	}
	ninep := c.SharedFS.Type == SharedFS9P
	switch {
	case !h.Chroot:
		why = append(why, "chroot: off in the configuration")
	case ninep:
		why = append(why, "chroot: QEMU's 9p server reaches the share's files through /proc/self/fd, which an empty root lacks")
	default:
		conf.Chroot = filepath.Join(sandboxDir, qemuRoot)
	}
	switch {
	case h.QEMUUser == "":
		why = append(why, "user: hypervisor.qemu_user is empty: QEMU keeps uid 0")
	case ninep:
		why = append(why, "user: QEMU serves the virtio-9p share and needs root's access to the containers' files (shared_fs.type = \"virtio-fs\" moves that to virtiofsd)")
	default:
		conf.User = h.QEMUUser
	}
	if conf.Seccomp && !conf.ElevatePrivilegesDenied() {
		why = append(why, "seccomp: set*id calls stay allowed: QEMU's filter is installed before it switches user, which needs them; after the switch it has neither uid 0 nor capabilities")
	}
	return conf, why
}
