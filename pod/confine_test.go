package pod

import (
	"strings"
	"testing"
)

func TestQEMUConfinement(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(c *Config)
		chroot     bool
		user       string
		denySetID  bool
		whyContain []string
	}{
		{name: "virtio-fs default: everything", edit: func(*Config) {},
			chroot: true, user: DefaultQEMUUser, whyContain: []string{"set*id calls stay allowed"}},
		{name: "9p: seccomp only, and why", edit: func(c *Config) { c.SharedFS.Type = SharedFS9P },
			denySetID: true, whyContain: []string{"chroot: QEMU's 9p server", "user: QEMU serves the virtio-9p share"}},
		{name: "turned off", edit: func(c *Config) {
			c.Hypervisor.Seccomp, c.Hypervisor.Chroot, c.Hypervisor.QEMUUser = false, false, ""
		}, whyContain: []string{"seccomp: off", "chroot: off", "qemu_user is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			conf, why := QEMUConfinement(c, "/run/sb")
			if got := conf.Chroot != ""; got != tt.chroot {
				t.Errorf("chroot %q, want set=%v", conf.Chroot, tt.chroot)
			}
			if conf.User != tt.user {
				t.Errorf("user %q, want %q", conf.User, tt.user)
			}
			if conf.ElevatePrivilegesDenied() != tt.denySetID {
				t.Errorf("set*id denied = %v, want %v", conf.ElevatePrivilegesDenied(), tt.denySetID)
			}
			all := strings.Join(why, "\n")
			for _, w := range tt.whyContain {
				if !strings.Contains(all, w) {
					t.Errorf("reasons %q lack %q", all, w)
				}
			}
		})
	}
}
