package shim

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLayoutIsDeterministicAndDistinct(t *testing.T) {
	l := Layout{Root: "/run/hull-shim"}
	id := strings.Repeat("a", 64)
	if l.PodDir("k8s.io", id) != l.PodDir("k8s.io", id) || l.Socket("/run/containerd/containerd.sock", "k8s.io", id) != l.Socket("/run/containerd/containerd.sock", "k8s.io", id) {
		t.Fatal("a pod's paths must be the same in every shim command: start, the daemon and delete find each other by them")
	}
	dirs := map[string]string{}
	socks := map[string]string{}
	for _, c := range []struct{ addr, ns, id string }{
		{"/run/containerd/containerd.sock", "k8s.io", id},
		{"/run/containerd/containerd.sock", "k8s.io", strings.Repeat("b", 64)},
		{"/run/containerd/containerd.sock", "default", id},
		{"/run/other/containerd.sock", "k8s.io", id},
		// The separator between parts keeps these apart.
		{"/run/containerd/containerd.sock", "k8s.i", "o" + id},
	} {
		name := c.addr + " " + c.ns + " " + c.id
		sock := l.Socket(c.addr, c.ns, c.id)
		if other, ok := socks[sock]; ok {
			t.Errorf("%s and %s share the socket %s", name, other, sock)
		}
		socks[sock] = name
		if filepath.Dir(filepath.Dir(sock)) != l.Root {
			t.Errorf("socket %s is not under %s/s", sock, l.Root)
		}
		dir := l.PodDir(c.ns, c.id)
		if c.addr != "/run/containerd/containerd.sock" {
			continue // one containerd's namespace and pod name one directory
		}
		if other, ok := dirs[dir]; ok {
			t.Errorf("%s and %s share the pod directory %s", name, other, dir)
		}
		dirs[dir] = name
		if !strings.HasPrefix(dir, filepath.Join(l.Root, c.ns)+"/") {
			t.Errorf("pod directory %s is not in its namespace's", dir)
		}
	}
}

func TestLayoutSocketFitsSunPath(t *testing.T) {
	// bats' containerd.bash: HULL_SHIM_ROOT=$(mktemp -d /tmp/hull-cri.XXXXXX)/shim-root,
	// CRI IDs of 64 characters, a long containerd address.
	l := Layout{Root: "/tmp/hull-cri.AbC123/shim-root"}
	id := strings.Repeat("f", 64)
	sock := l.Socket("/tmp/hull-cri.AbC123/containerd/"+strings.Repeat("d", 80)+"/containerd.sock", "k8s.io", id)
	// sun_path is 108 bytes with the terminating NUL.
	if len(sock) >= 108 {
		t.Errorf("socket path %s is %d bytes: a unix socket path must be under 108", sock, len(sock))
	}
	// The pod's own sockets (agent, QMP, virtiofsd) are in its vm/ dir.
	agent := filepath.Join(l.PodDir("k8s.io", id), vmDir, "virtiofsd.sock")
	if len(agent) >= 108 {
		t.Errorf("a pod's socket %s is %d bytes: must be under 108", agent, len(agent))
	}
}
