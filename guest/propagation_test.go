package guest

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestPropagations(t *testing.T) {
	s := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"rshared"}}, // not a bind
		{Destination: "/plain", Type: "bind", Source: "c1/volumes/a", Options: []string{"rbind"}},
		{Destination: "/shared", Type: "bind", Source: "c1/volumes/b", Options: []string{"rbind", "ro", "nosuid", "rshared"}},
		{Destination: "/slave", Source: "c1/volumes/c", Options: []string{"bind", "private", "slave", "noexec", "nodev"}},
		{Destination: "/rro", Type: "bind", Source: "c1/volumes/d", Options: []string{"rbind", "rro", "rnosuid", "rslave"}},
	}}
	want := []mountPropagation{
		{dest: "/shared", source: "c1/volumes/b", flags: unix.MS_SHARED | unix.MS_REC, attrs: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID},
		// The last propagation option wins, as in mount(8).
		{dest: "/slave", source: "c1/volumes/c", flags: unix.MS_SLAVE, attrs: unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODEV},
		// "ro" reaches the top mount alone, "rro" every mount of the tree.
		{dest: "/rro", source: "c1/volumes/d", flags: unix.MS_SLAVE | unix.MS_REC, recAttrs: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID},
	}
	if got := propagations(s); !reflect.DeepEqual(got, want) {
		t.Errorf("propagations = %+v, want %+v", got, want)
	}
	if !want[0].peered() || !want[1].peered() {
		t.Error("shared and slave mounts must be re-bound from the share")
	}
	if (mountPropagation{flags: unix.MS_PRIVATE}).peered() {
		t.Error("a private mount needs no fresh bind")
	}
}
