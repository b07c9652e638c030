package pod

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeNS is a host's namespace files: path → what the kernel would say.
type fakeNS map[string]NSFile

func (f fakeNS) probe(path string) (NSFile, error) {
	if nf, ok := f[path]; ok {
		return nf, nil
	}
	return NSFile{}, os.ErrNotExist
}

// A host where hull runs in the host's namespaces (1xx), container c1
// (sandbox s1) has its proxy at PID 10 in netns /run/netns/pod1, c2 is
// an app container of s1 (proxy 11), c3 is alone in sandbox s3 (proxy 30),
// and PID 50 is a host process in private namespaces of its own.
func testHost() fakeNS {
	f := fakeNS{}
	add := func(path string, t specs.LinuxNamespaceType, ino uint64) {
		f[path] = NSFile{Type: t, ID: NSID{Dev: 4, Ino: ino}}
	}
	for _, k := range []struct {
		file string
		typ  specs.LinuxNamespaceType
		ino  uint64
	}{{"ipc", specs.IPCNamespace, 101}, {"uts", specs.UTSNamespace, 102}, {"net", specs.NetworkNamespace, 103},
		{"mnt", specs.MountNamespace, 104}, {"pid", specs.PIDNamespace, 105}, {"cgroup", specs.CgroupNamespace, 106},
		{"user", specs.UserNamespace, 107}} {
		add("/proc/self/ns/"+k.file, k.typ, k.ino)
		add("/proc/1/ns/"+k.file, k.typ, k.ino)
		add("/proc/10/ns/"+k.file, k.typ, 200+k.ino)
		add("/proc/11/ns/"+k.file, k.typ, 300+k.ino)
		add("/proc/30/ns/"+k.file, k.typ, 400+k.ino)
		add("/proc/50/ns/"+k.file, k.typ, 500+k.ino)
	}
	// Proxies live in their sandbox's network namespace and share the
	// host's user namespace.
	add("/proc/11/ns/net", specs.NetworkNamespace, 303)
	add("/run/netns/pod1", specs.NetworkNamespace, 303)
	add("/run/netns/cni-9", specs.NetworkNamespace, 900)
	for _, pid := range []string{"10", "11", "30"} {
		add("/proc/"+pid+"/ns/user", specs.UserNamespace, 107)
	}
	return f
}

func testIndex(f fakeNS) (NSIndex, map[NSID]bool) {
	host := HostNamespaces(f.probe)
	holders := []NSHolder{
		{Container: "c1", Sandbox: "s1", PID: 10, NetNS: "/run/netns/pod1"},
		{Container: "c2", Sandbox: "s1", PID: 11, NetNS: "/run/netns/pod1"},
		{Container: "c3", Sandbox: "s3", PID: 30},
		{Container: "gone", Sandbox: "s9"},
	}
	return IndexNamespaces(holders, host, f.probe), host
}

func TestIndexNamespaces(t *testing.T) {
	f := testHost()
	idx, host := testIndex(f)
	for path, want := range map[string]NSOwner{
		"/proc/10/ns/ipc":    {"c1", "s1"},
		"/proc/10/ns/mnt":    {"c1", "s1"},
		"/proc/10/ns/cgroup": {"c1", "s1"},
		"/proc/11/ns/uts":    {"c2", "s1"},
		"/proc/11/ns/net":    {"c1", "s1"}, // the sandbox's network
		"/run/netns/pod1":    {"c1", "s1"},
		"/proc/30/ns/pid":    {"c3", "s3"},
	} {
		if got := idx[f[path].ID]; got != want {
			t.Errorf("%s: owner %+v, want %+v", path, got, want)
		}
	}
	// A namespace a proxy shares with the host is the host's, never a
	// container's.
	if owner, ok := idx[f["/proc/10/ns/user"].ID]; ok || !host[f["/proc/10/ns/user"].ID] {
		t.Errorf("the host's user namespace is indexed as %+v", owner)
	}
	if _, ok := idx[f["/proc/50/ns/ipc"].ID]; ok {
		t.Error("a host process's namespace is indexed as a container's")
	}
}

func TestPlanNamespaces(t *testing.T) {
	f := testHost()
	idx, host := testIndex(f)
	ns := func(t specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: t, Path: path}
	}
	tests := []struct {
		name    string
		nss     []specs.LinuxNamespace
		want    NSPlan
		wantErr string
	}{
		{name: "no paths", nss: []specs.LinuxNamespace{ns(specs.IPCNamespace, ""), ns(specs.NetworkNamespace, "")},
			want: NSPlan{Join: map[specs.LinuxNamespaceType]string{}}},
		{name: "a network namespace to take over", nss: []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/run/netns/cni-9")},
			want: NSPlan{Join: map[specs.LinuxNamespaceType]string{}, NetNS: "/run/netns/cni-9"}},
		{name: "siblings: a pod's app container, podman style",
			nss: []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/run/netns/pod1"), ns(specs.IPCNamespace, "/proc/10/ns/ipc"),
				ns(specs.UTSNamespace, "/proc/10/ns/uts"), ns(specs.MountNamespace, "/proc/11/ns/mnt"),
				ns(specs.CgroupNamespace, "/proc/10/ns/cgroup"), ns(specs.PIDNamespace, "/proc/10/ns/pid")},
			want: NSPlan{Sandbox: "s1", Join: map[specs.LinuxNamespaceType]string{
				specs.IPCNamespace: "c1", specs.UTSNamespace: "c1", specs.MountNamespace: "c2",
				specs.CgroupNamespace: "c1", specs.PIDNamespace: "c1"}}},
		{name: "sibling's network by /proc path", nss: []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/proc/30/ns/net")},
			want: NSPlan{Sandbox: "s3", Join: map[specs.LinuxNamespaceType]string{}}},
		{name: "type mismatch", nss: []specs.LinuxNamespace{ns(specs.UTSNamespace, "/proc/10/ns/ipc")},
			wantErr: "wrong namespace type: it is ipc, not uts"},
		{name: "type mismatch on the host", nss: []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/proc/1/ns/ipc")},
			wantErr: "wrong namespace type: it is ipc, not network"},
		{name: "the host's namespace", nss: []specs.LinuxNamespace{ns(specs.IPCNamespace, "/proc/1/ns/ipc")},
			wantErr: "host process's namespace"},
		{name: "a host process's private namespace", nss: []specs.LinuxNamespace{ns(specs.UTSNamespace, "/proc/50/ns/uts")},
			wantErr: "host process's namespace"},
		{name: "the host's user namespace that proxies share", nss: []specs.LinuxNamespace{ns(specs.UserNamespace, "/proc/10/ns/user")},
			wantErr: "host process's namespace"},
		{name: "host networking", nss: []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/proc/1/ns/net")},
			wantErr: "host networking"},
		{name: "no such path", nss: []specs.LinuxNamespace{ns(specs.IPCNamespace, "/proc/77/ns/ipc")},
			wantErr: "ipc namespace path /proc/77/ns/ipc"},
		{name: "two sandboxes", nss: []specs.LinuxNamespace{ns(specs.IPCNamespace, "/proc/10/ns/ipc"), ns(specs.UTSNamespace, "/proc/30/ns/uts")},
			wantErr: "container c3's, in sandbox s3, but other namespaces are sandbox s1's"},
		{name: "a sibling's IPC with a network of no sandbox",
			nss:     []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/run/netns/cni-9"), ns(specs.IPCNamespace, "/proc/10/ns/ipc")},
			wantErr: "it is not sandbox s1's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanNamespaces(tt.nss, idx, host, f.probe)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := PlanNamespaces([]specs.LinuxNamespace{ns(specs.NetworkNamespace, "/proc/1/ns/net")}, idx, host, f.probe); !errors.Is(err, ErrHostNetwork) {
		t.Errorf("host networking: %v, want ErrHostNetwork", err)
	}
}

func TestGuestNamespaces(t *testing.T) {
	plan := NSPlan{Sandbox: "s1", Join: map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "c1", specs.MountNamespace: "c2"}}
	nss := plan.Apply([]specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.NetworkNamespace, Path: "/run/netns/pod1"},
		{Type: specs.IPCNamespace, Path: "/proc/10/ns/ipc"},
		{Type: specs.MountNamespace, Path: "/proc/11/ns/mnt"},
	})
	got, err := guestNamespaces(nss)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.NetworkNamespace},
		{Type: specs.IPCNamespace, Path: "container:c1"},
		{Type: specs.MountNamespace, Path: "container:c2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guest namespaces = %+v, want %+v", got, want)
	}
	if _, err := guestNamespaces([]specs.LinuxNamespace{{Type: specs.UTSNamespace, Path: "/proc/10/ns/uts"}}); err == nil {
		t.Error("a host path was handed to the guest")
	}
}

// ProbeNS against the kernel: no root needed for one's own namespaces.
func TestProbeNS(t *testing.T) {
	for file, want := range map[string]specs.LinuxNamespaceType{
		"ipc": specs.IPCNamespace, "uts": specs.UTSNamespace, "net": specs.NetworkNamespace,
		"mnt": specs.MountNamespace, "pid": specs.PIDNamespace, "cgroup": specs.CgroupNamespace,
	} {
		f, err := ProbeNS("/proc/self/ns/" + file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if f.Type != want || f.ID.Ino == 0 {
			t.Errorf("%s: %+v, want type %s", file, f, want)
		}
	}
	a, _ := ProbeNS("/proc/self/ns/ipc")
	b, _ := ProbeNS("/proc/thread-self/ns/ipc")
	if a.ID != b.ID {
		t.Errorf("one namespace, two identities: %+v %+v", a.ID, b.ID)
	}
	plain := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ProbeNS(plain); err == nil || !strings.Contains(err.Error(), "not a namespace") {
		t.Errorf("a plain file: %v, want 'not a namespace'", err)
	}
}
