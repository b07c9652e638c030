package guest

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testShare = "/run/hull/shared"

func TestUnderShare(t *testing.T) {
	tests := []struct {
		rel     string
		want    string
		wantErr bool
	}{
		{rel: "c1/rootfs", want: testShare + "/c1/rootfs"},
		{rel: "./c1/rootfs/", want: testShare + "/c1/rootfs"},
		{rel: "c1/../c2/rootfs", want: testShare + "/c2/rootfs"},
		{rel: "..x/rootfs", want: testShare + "/..x/rootfs"},
		{rel: ".", want: testShare},
		{rel: "", wantErr: true},
		{rel: "/c1/rootfs", wantErr: true},
		{rel: "..", wantErr: true},
		{rel: "../x", wantErr: true},
		{rel: "c1/../../x", wantErr: true},
		{rel: "c1/../..", wantErr: true},
	}
	for _, tt := range tests {
		got, err := underShare(testShare, tt.rel)
		if tt.wantErr {
			if err == nil {
				t.Errorf("underShare(%q) = %q, want an error", tt.rel, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("underShare(%q) = %q, %v; want %q", tt.rel, got, err, tt.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"c1", "abc-123_x.y", "..a", strings.Repeat("a", 1024)} {
		if err := validID(id); err != nil {
			t.Errorf("validID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../c", "/abs", "a\x00b", strings.Repeat("a", 1025)} {
		if err := validID(id); err == nil {
			t.Errorf("validID(%q) = nil, want an error", id)
		}
	}
}

// hostSpec is a spec as the host prepares it: share-relative root and bind
// sources, plus what only makes sense on the host.
func hostSpec() *specs.Spec {
	return &specs.Spec{
		Root: &specs.Root{Path: "c1/rootfs"},
		Process: &specs.Process{
			Args:            []string{"sh"},
			ApparmorProfile: "hull-default",
			SelinuxLabel:    "system_u:system_r:container_t:s0",
		},
		Hooks: &specs.Hooks{
			Prestart: []specs.Hook{{Path: "/usr/bin/netns-hook"}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "c1/mounts/hosts", Options: []string{"ro"}},
			{Destination: "/data", Source: "c1/mounts/data", Options: []string{"rbind", "rw"}},
			{Destination: "/dev/shm", Source: "/dev/shm", Options: []string{"bind"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod1/c1",
			MountLabel:  "system_u:object_r:container_file_t:s0",
			Devices:     []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
				{Type: specs.IPCNamespace, Path: "container:pod"},
				{Type: specs.MountNamespace},
			},
		},
	}
}

func TestToGuestSpec(t *testing.T) {
	s := hostSpec()
	if err := toGuestSpec(s, "c1", testShare); err != nil {
		t.Fatalf("toGuestSpec: %v", err)
	}
	if want := testShare + "/c1/rootfs"; s.Root.Path != want {
		t.Errorf("root = %q, want %q", s.Root.Path, want)
	}
	wantSources := map[string]string{
		"/proc":      "proc", // not a bind mount: left alone
		"/etc/hosts": testShare + "/c1/mounts/hosts",
		"/data":      testShare + "/c1/mounts/data",
		"/dev/shm":   "/dev/shm", // absolute: a guest path already
		"/tmp":       "tmpfs",
	}
	for _, m := range s.Mounts {
		if want := wantSources[m.Destination]; m.Source != want {
			t.Errorf("mount %s: source %q, want %q", m.Destination, m.Source, want)
		}
	}
	if s.Hooks != nil {
		t.Errorf("hooks kept: %+v", s.Hooks)
	}
	if s.Process.ApparmorProfile != "" || s.Process.SelinuxLabel != "" || s.Linux.MountLabel != "" {
		t.Errorf("LSM labels kept: apparmor %q selinux %q mount %q", s.Process.ApparmorProfile, s.Process.SelinuxLabel, s.Linux.MountLabel)
	}
	// A device node names a number, which is the guest kernel's device.
	if want := []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}; !reflect.DeepEqual(s.Linux.Devices, want) {
		t.Errorf("devices = %+v, want %+v", s.Linux.Devices, want)
	}
	if want := "/hull/c1"; s.Linux.CgroupsPath != want {
		t.Errorf("cgroupsPath = %q, want %q", s.Linux.CgroupsPath, want)
	}
	wantNS := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "container:pod"},
		{Type: specs.MountNamespace},
	}
	if !reflect.DeepEqual(s.Linux.Namespaces, wantNS) {
		t.Errorf("namespaces = %+v, want %+v (network dropped, container paths kept)", s.Linux.Namespaces, wantNS)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"sh"}) {
		t.Errorf("process args changed: %q", s.Process.Args)
	}
}

func TestToGuestSpecWithoutLinux(t *testing.T) {
	s := hostSpec()
	s.Linux = nil
	if err := toGuestSpec(s, "c2", testShare); err != nil {
		t.Fatalf("toGuestSpec: %v", err)
	}
	if s.Linux == nil || s.Linux.CgroupsPath != "/hull/c2" {
		t.Errorf("linux = %+v, want a section with cgroupsPath /hull/c2", s.Linux)
	}
}

func TestToGuestSpecErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *specs.Spec)
	}{
		{"no root", func(s *specs.Spec) { s.Root = nil }},
		{"empty root", func(s *specs.Spec) { s.Root.Path = "" }},
		{"absolute root", func(s *specs.Spec) { s.Root.Path = "/var/lib/containers/c1/rootfs" }},
		{"root climbs out", func(s *specs.Spec) { s.Root.Path = "../x" }},
		{"root climbs out after a detour", func(s *specs.Spec) { s.Root.Path = "c1/../../etc" }},
		{"no process", func(s *specs.Spec) { s.Process = nil }},
		// The host never sends one; if it did, the path would name
		// something else in the guest.
		{"host namespace path", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "/proc/1/ns/uts"})
		}},
		{"bind source climbs out", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "../../etc"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := hostSpec()
			tt.mutate(s)
			if err := toGuestSpec(s, "c1", testShare); err == nil {
				t.Errorf("toGuestSpec succeeded; root %+v", s.Root)
			}
		})
	}
}

func TestSharePaths(t *testing.T) {
	s := &specs.Spec{
		Root: &specs.Root{Path: "/run/hull/shared/c1/rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/data", Type: "bind", Source: "/run/hull/shared/c1/volumes/ab-data", Options: []string{"rbind"}},
			{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/x", Type: "bind", Source: "/run/hull/sharedother/x", Options: []string{"bind"}},
		},
	}
	got := sharePaths(s, "/run/hull/shared")
	want := []string{"/run/hull/shared/c1/rootfs", "/run/hull/shared/c1/volumes/ab-data"}
	if !slices.Equal(got, want) {
		t.Errorf("sharePaths = %q, want %q", got, want)
	}
}

func TestJoinContainerNamespaces(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "container:pod"},
		{Type: specs.MountNamespace, Path: "container:pod"},
		{Type: specs.CgroupNamespace, Path: "container:web"},
	}}}
	pids := map[string]int{"pod": 7, "web": 9}
	err := joinContainerNamespaces(s, func(id string) (int, error) { return pids[id], nil })
	if err != nil {
		t.Fatalf("joinContainerNamespaces: %v", err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		{Type: specs.MountNamespace, Path: "/proc/7/ns/mnt"},
		{Type: specs.CgroupNamespace, Path: "/proc/9/ns/cgroup"},
	}
	if !reflect.DeepEqual(s.Linux.Namespaces, want) {
		t.Errorf("namespaces = %+v, want %+v", s.Linux.Namespaces, want)
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "container:pod"}}
	if err := joinContainerNamespaces(s, func(string) (int, error) { return 7, nil }); err == nil {
		t.Error("joined a user namespace, which no container holds apart")
	}
}
