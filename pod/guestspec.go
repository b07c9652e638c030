package pod

import (
	"encoding/json"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestMount kinds the guest creates itself; everything else must be a
// bind mount placed through the share.
var guestFSTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "shm": true, "bpf": true,
}

// The mount options hull acts on itself: a mount of type bind, or with one
// of bindOptions, is a volume placed through the share, read-only there
// with readOnlyOption. The runtime in the guest applies these and every
// other option again, inside the VM.
var bindOptions = []string{"bind", "rbind"}

const readOnlyOption = "ro"

// GuestSpec prepares a container's spec for the agent: the rootfs and every
// bind mount are placed in the share and named relative to it, and hooks
// (which run on the host) are removed. bundle resolves a relative root.path.
// Namespace paths must already be another container's ("container:ID", see
// NSPlan.Apply) or the network's (the VM's, for every container): a host
// path would name something else in the guest.
func GuestSpec(spec *specs.Spec, cid, bundle string, share *Share) (b []byte, err error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("spec has no root.path")
	}
	g := *spec
	g.Hooks = nil
	if spec.Linux != nil {
		l := *spec.Linux
		if l.Namespaces, err = guestNamespaces(spec.Linux.Namespaces); err != nil {
			return nil, err
		}
		g.Linux = &l
	}
	defer func() {
		if err != nil {
			_ = share.RemoveContainer(cid)
		}
	}()
	rel, err := share.AddRootfs(cid, InBundle(bundle, spec.Root.Path), false)
	if err != nil {
		return nil, err
	}
	g.Root = &specs.Root{Path: rel, Readonly: spec.Root.Readonly}
	g.Mounts = make([]specs.Mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		if !isBindMount(m) {
			if !guestFSTypes[m.Type] {
				return nil, fmt.Errorf("mount %s: type %q is not supported in a VM", m.Destination, m.Type)
			}
			g.Mounts = append(g.Mounts, m)
			continue
		}
		rel, err := share.AddVolume(cid, InBundle(bundle, m.Source), m.Destination, slices.Contains(m.Options, readOnlyOption))
		if err != nil {
			return nil, err
		}
		m.Source = rel
		m.Type = "bind"
		g.Mounts = append(g.Mounts, m)
	}
	b, err = json.Marshal(&g)
	if err != nil {
		return nil, fmt.Errorf("encode guest spec: %w", err)
	}
	return b, nil
}

func isBindMount(m specs.Mount) bool {
	return m.Type == "bind" || slices.ContainsFunc(m.Options, func(o string) bool { return slices.Contains(bindOptions, o) })
}
