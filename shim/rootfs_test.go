package shim

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{nil, 0, ""},
		// containerd's native snapshotter: a read-write bind.
		{[]string{"rbind", "rw"}, unix.MS_BIND | unix.MS_REC, ""},
		{[]string{"bind", "ro", "nosuid", "nodev"}, unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, ""},
		// The overlay snapshotter: everything is data for overlayfs.
		{[]string{"index=off", "lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"}, 0, "index=off,lowerdir=/l2:/l1,upperdir=/u,workdir=/w"},
		// A later option undoes an earlier one.
		{[]string{"ro", "rw"}, 0, ""},
		{[]string{"noexec", "exec", "nosuid"}, unix.MS_NOSUID, ""},
		{[]string{"defaults", "noatime", "sync", "async", "size=1m"}, unix.MS_NOATIME, "size=1m"},
	} {
		flags, data := parseMountOptions(tc.opts)
		if flags != tc.flags || data != tc.data {
			t.Errorf("parseMountOptions(%q) = %#x, %q; want %#x, %q", tc.opts, flags, data, tc.flags, tc.data)
		}
	}
}
