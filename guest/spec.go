package guest

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// toGuestSpec rewrites the host-prepared spec for this guest: share-relative
// paths become paths under shareDir, and what only makes sense on the host
// (namespace paths, host devices, LSM labels, the network namespace: all
// containers use the VM's) is dropped.
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
	s.Process.ApparmorProfile = ""
	s.Process.SelinuxLabel = ""
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	l := s.Linux
	l.MountLabel = ""
	l.Devices = nil
	l.CgroupsPath = "/hull/" + id
	var ns []specs.LinuxNamespace
	for _, n := range l.Namespaces {
		if n.Type == specs.NetworkNamespace {
			continue
		}
		n.Path = ""
		ns = append(ns, n)
	}
	l.Namespaces = ns
	return nil
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
