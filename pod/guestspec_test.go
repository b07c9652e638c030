package pod

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/mountinfo"
)

func TestBindModeOf(t *testing.T) {
	tests := []struct {
		opts []string
		want BindMode
	}{
		{nil, BindMode{}},
		{[]string{"bind"}, BindMode{}},
		{[]string{"bind", "ro"}, BindMode{ReadOnly: true}},
		{[]string{"rbind", "ro"}, BindMode{Recursive: true, ReadOnly: true}},
		{[]string{"rbind", "rro"}, BindMode{Recursive: true, RecursiveReadOnly: true}},
		{[]string{"rbind", "ro", "rro"}, BindMode{Recursive: true, ReadOnly: true, RecursiveReadOnly: true}},
		// As runc reads them: rbind wins over bind wherever it is, and of
		// ro/rw and of rro/rrw the last one wins.
		{[]string{"rbind", "bind"}, BindMode{Recursive: true}},
		{[]string{"ro", "rw", "rbind"}, BindMode{Recursive: true}},
		{[]string{"rw", "ro"}, BindMode{ReadOnly: true}},
		{[]string{"rbind", "rro", "rrw"}, BindMode{Recursive: true}},
		{[]string{"nosuid", "rslave", "noexec"}, BindMode{}},
	}
	for _, tt := range tests {
		if got := bindModeOf(tt.opts); got != tt.want {
			t.Errorf("bindModeOf(%q) = %+v, want %+v", tt.opts, got, tt.want)
		}
	}
}

func TestSubmountMounts(t *testing.T) {
	tree := Tree{Rel: "c1/volumes/ab-data", Submounts: []Submount{
		{Path: "sub", Rel: "c1/submounts/ab-data.1"},
		{Path: "sub/deep", Rel: "c1/submounts/ab-data.2"},
	}}
	tests := []struct {
		name    string
		opts    []string
		subOpts []string
	}{
		// ro, nosuid... and a non-peered propagation are the top mount's.
		{"top only", []string{"rbind", "ro", "nosuid", "nodev", "noexec", "private"}, []string{"bind"}},
		{"recursive", []string{"rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rslave"}, []string{"bind", "ro", "nosuid", "nodev", "noexec", "rslave"}},
		// The guest binds a shared or slave mount again, over its
		// submounts, which then follow it.
		{"peered", []string{"rbind", "ro", "shared"}, []string{"bind", "shared"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := []specs.Mount{
				{Destination: "/data/sub", Type: "bind", Source: "c1/submounts/ab-data.1", Options: tt.subOpts},
				{Destination: "/data/sub/deep", Type: "bind", Source: "c1/submounts/ab-data.2", Options: tt.subOpts},
			}
			if got := submountMounts(tree, "/data", tt.opts); !reflect.DeepEqual(got, want) {
				t.Errorf("submountMounts = %+v, want %+v", got, want)
			}
		})
	}
	root := Tree{Rel: "c1/rootfs", Submounts: []Submount{{Path: "www", Rel: "c1/submounts/rootfs.1"}}}
	want := []specs.Mount{{Destination: "/www", Type: "bind", Source: "c1/submounts/rootfs.1", Options: []string{"bind"}}}
	if got := submountMounts(root, "/", nil); !reflect.DeepEqual(got, want) {
		t.Errorf("rootfs: submountMounts = %+v, want %+v", got, want)
	}
	if got := submountMounts(Tree{Rel: "c1/volumes/x"}, "/x", []string{"rbind"}); got != nil {
		t.Errorf("no submounts: %+v", got)
	}
}

func TestMountsUnder(t *testing.T) {
	mounts := []mountinfo.Mount{
		{ID: 1, Parent: 0, Point: "/"},
		{ID: 10, Parent: 1, Point: "/src"},
		{ID: 11, Parent: 10, Point: "/src/a/deep"},
		{ID: 12, Parent: 10, Point: "/src/a"},
		{ID: 13, Parent: 10, Point: "/src/b"},
		{ID: 14, Parent: 1, Point: "/srcother/x"},
		{ID: 15, Parent: 12, Point: "/src/a"}, // stacked on 12
	}
	want := []mountinfo.Mount{
		{ID: 12, Parent: 10, Point: "a"},
		{ID: 13, Parent: 10, Point: "b"},
		{ID: 15, Parent: 12, Point: "a"},
		{ID: 11, Parent: 10, Point: "a/deep"},
	}
	for _, dir := range []string{"/src", "/src/"} {
		if got := mountsUnder(mounts, dir); !reflect.DeepEqual(got, want) {
			t.Errorf("mountsUnder(%s) = %+v, want %+v", dir, got, want)
		}
	}
	if got := mountsUnder(mounts, "/"); len(got) != len(mounts)-1 {
		t.Errorf("mountsUnder(/) = %+v, want all but the root", got)
	}
}
