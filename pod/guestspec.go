package pod

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestMount kinds the guest creates itself; everything else must be a
// bind mount placed through the share.
var guestFSTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "shm": true, "bpf": true,
}

// bindOptions make a mount a bind mount, placed through the share.
var bindOptions = []string{"bind", "rbind"}

// bindModeOptions are the options of a bind mount that hull acts on
// itself, on the host, each by what it does to the tree's BindMode. They
// are read in order, as runc 1.1 reads them: "rbind" anywhere makes the
// tree recursive, and of "ro" and "rw", and of "rro" and "rrw", the last
// one wins. The runtime in the guest reads and applies them all again,
// inside the VM.
var bindModeOptions = map[string]func(*BindMode){
	"bind":  func(*BindMode) {},
	"rbind": func(m *BindMode) { m.Recursive = true },
	"ro":    func(m *BindMode) { m.ReadOnly = true },
	"rw":    func(m *BindMode) { m.ReadOnly = false },
	"rro":   func(m *BindMode) { m.RecursiveReadOnly = true },
	"rrw":   func(m *BindMode) { m.RecursiveReadOnly = false },
}

func bindModeOf(opts []string) BindMode {
	var m BindMode
	for _, o := range opts {
		if set, ok := bindModeOptions[o]; ok {
			set(&m)
		}
	}
	return m
}

// submountOptions are what the options of a bind mount give each of its
// submounts, once that submount is a mount of its own in the guest spec.
// runc applies the recursive ones to the whole tree, while "ro", "nosuid"
// and the like reach the top mount only. A shared or slave bind is bound
// again from the share once the runtime has placed it (see
// guest/propagation.go), over what lies under it: its submounts ask for the
// same propagation, so that they are bound again too, after it and on it.
var submountOptions = map[string]string{
	"rro": "ro", "rnosuid": "nosuid", "rnodev": "nodev", "rnoexec": "noexec",
	"rshared": "rshared", "rslave": "rslave", "rprivate": "rprivate", "runbindable": "runbindable",
	"shared": "shared", "slave": "slave",
}

// submountMounts mounts each submount of a tree (see Submount) at its place
// under dest; they follow the tree's own mount in the guest spec, as they
// come with it under runc, before any later mount of the spec. opts are the
// tree's mount options.
func submountMounts(t Tree, dest string, opts []string) []specs.Mount {
	if len(t.Submounts) == 0 {
		return nil
	}
	subOpts := []string{"bind"}
	for _, o := range opts {
		if so, ok := submountOptions[o]; ok {
			subOpts = append(subOpts, so)
		}
	}
	ms := make([]specs.Mount, 0, len(t.Submounts))
	for _, sub := range t.Submounts {
		ms = append(ms, specs.Mount{
			Destination: path.Join(dest, sub.Path),
			Type:        "bind",
			Source:      sub.Rel,
			Options:     slices.Clone(subOpts),
		})
	}
	return ms
}

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
	root, err := share.AddRootfs(cid, InBundle(bundle, spec.Root.Path))
	if err != nil {
		return nil, err
	}
	g.Root = &specs.Root{Path: root.Rel, Readonly: spec.Root.Readonly}
	// The rootfs's submounts first: runc finds them there before it
	// mounts anything of the spec's.
	g.Mounts = submountMounts(root, "/", nil)
	for _, m := range spec.Mounts {
		if !isBindMount(m) {
			if !guestFSTypes[m.Type] {
				return nil, fmt.Errorf("mount %s: type %q is not supported in a VM", m.Destination, m.Type)
			}
			g.Mounts = append(g.Mounts, m)
			continue
		}
		vol, err := share.AddVolume(cid, InBundle(bundle, m.Source), m.Destination, bindModeOf(m.Options))
		if err != nil {
			return nil, err
		}
		m.Source = vol.Rel
		m.Type = "bind"
		g.Mounts = append(g.Mounts, m)
		g.Mounts = append(g.Mounts, submountMounts(vol, m.Destination, m.Options)...)
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
