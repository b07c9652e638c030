package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// toGuestSpec rewrites the host-prepared spec for this guest: share-relative
// paths become paths under shareDir, and what only makes sense on the host
// (LSM labels, the network namespace: all containers use the VM's) is
// dropped. linux.devices stay: a node names a device number, and in a VM
// that number is the guest kernel's device. A namespace path must name
// another container of this sandbox ("container:ID"): any other is a host
// path, which names something else here, and is refused.
func toGuestSpec(s *specs.Spec, id, shareDir string) error {
	if s.Root == nil || s.Root.Path == "" {
		return fmt.Errorf("spec has no root path")
	}
	if s.Process == nil {
		return fmt.Errorf("spec has no process")
	}
	root, err := underShare(shareDir, s.Root.Path)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	s.Root.Path = root
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if !isBind(*m) || filepath.IsAbs(m.Source) {
			continue
		}
		src, err := underShare(shareDir, m.Source)
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		m.Source = src
	}
	s.Hooks = nil
	// The runtimes in the image (runc 1.1, crun 1.8) speak spec 1.0.2 and
	// crun refuses a newer version string; what hull passes on is 1.0.2.
	s.Version = guestSpecVersion
	s.Process.ApparmorProfile = ""
	s.Process.SelinuxLabel = ""
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	l := s.Linux
	l.MountLabel = ""
	l.CgroupsPath = cgroupsPath(id)
	var ns []specs.LinuxNamespace
	for _, n := range l.Namespaces {
		if n.Type == specs.NetworkNamespace {
			continue
		}
		if n.Path != "" && !strings.HasPrefix(n.Path, agentproto.ContainerNSPrefix) {
			return fmt.Errorf("%s namespace path %q is not a container of this sandbox", n.Type, n.Path)
		}
		ns = append(ns, n)
	}
	l.Namespaces = ns
	return nil
}

// nsFiles names the /proc/PID/ns entry of each namespace type.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.PIDNamespace: "pid", specs.MountNamespace: "mnt",
	specs.CgroupNamespace: "cgroup",
}

// joinContainerNamespaces points namespaces marked "container:ID" by the
// host (a container sharing another's IPC, UTS, PID, mount or cgroup
// namespace) at that container's init process in this guest.
func joinContainerNamespaces(s *specs.Spec, initPID func(id string) (int, error)) error {
	if s.Linux == nil {
		return nil
	}
	for i := range s.Linux.Namespaces {
		n := &s.Linux.Namespaces[i]
		id, ok := strings.CutPrefix(n.Path, agentproto.ContainerNSPrefix)
		if !ok {
			continue
		}
		file, known := nsFiles[n.Type]
		if !known {
			return fmt.Errorf("namespace %s cannot be shared with container %s", n.Type, id)
		}
		pid, err := initPID(id)
		if err != nil {
			return fmt.Errorf("share %s namespace of %s: %w", n.Type, id, err)
		}
		n.Path = fmt.Sprintf("/proc/%d/ns/%s", pid, file)
	}
	return nil
}

// takeNetSysctls removes the net.* sysctls from the spec and returns them:
// containers share the VM's network namespace, where runc refuses them, so
// the agent sets them on the VM itself (the VM is the sandbox).
func takeNetSysctls(s *specs.Spec) map[string]string {
	if s.Linux == nil {
		return nil
	}
	var net map[string]string
	for k, v := range s.Linux.Sysctl {
		if strings.HasPrefix(k, "net.") {
			if net == nil {
				net = map[string]string{}
			}
			net[k] = v
			delete(s.Linux.Sysctl, k)
		}
	}
	return net
}

// setSysctls writes sysctls under procSys ("/proc/sys").
func setSysctls(procSys string, kv map[string]string) error {
	if len(kv) > 0 && procSys == "" {
		return fmt.Errorf("no /proc/sys configured for sysctls")
	}
	for k, v := range kv {
		rel := strings.ReplaceAll(k, ".", "/")
		if strings.Contains(rel, "..") {
			return fmt.Errorf("sysctl %q: bad name", k)
		}
		if err := os.WriteFile(filepath.Join(procSys, rel), []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// guestSpecVersion is the spec version the guest's runtimes accept.
const guestSpecVersion = "1.0.2"

// sharePaths lists the paths of a guest spec that lie in the share: its
// root and the sources of its binds from there.
func sharePaths(s *specs.Spec, shareDir string) []string {
	in := func(p string) bool { return strings.HasPrefix(p, shareDir+"/") }
	var paths []string
	if s.Root != nil && in(s.Root.Path) {
		paths = append(paths, s.Root.Path)
	}
	for _, m := range s.Mounts {
		if isBind(m) && in(m.Source) {
			paths = append(paths, m.Source)
		}
	}
	return paths
}

// underShare joins a share-relative path to shareDir, refusing paths that
// are absolute or climb out.
func underShare(shareDir, rel string) (string, error) {
	if filepath.IsAbs(rel) || rel == "" {
		return "", fmt.Errorf("%q is not relative to the share", rel)
	}
	clean := filepath.Clean(rel)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%q climbs out of the share", rel)
	}
	return filepath.Join(shareDir, clean), nil
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// validID refuses container and exec IDs that could name a path elsewhere.
func validID(id string) error {
	if id == "" || len(id) > 1024 || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid id %q", id)
	}
	return nil
}
