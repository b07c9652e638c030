package pod

import (
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Features is the OCI features document of `hull features`, made from the
// tables the runtime acts on, so that it cannot promise what the code does
// not do. Hooks are the front end's to list: it is the one that runs them.
func Features() *features.Features {
	yes, no := true, false
	var ns []string
	for _, k := range nsKinds {
		ns = append(ns, string(k.typ))
	}
	slices.Sort(ns)
	mountTypes := append(slices.Collect(maps.Keys(guestFSTypes)), "bind")
	slices.Sort(mountTypes)
	return &features.Features{
		OCIVersionMin: ociVersionMin,
		OCIVersionMax: specs.Version,
		MountOptions:  mountOptions(),
		Linux: &features.Linux{
			Namespaces: ns,
			// NewHostCgroup: cgroupfs paths on v1 hierarchies or the
			// unified v2 one (a path in systemd form as runc's cgroupfs
			// driver takes it, one directory); with --systemd-cgroup, a
			// transient scope of the system's systemd. No user instance.
			Cgroup: &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no},
			// The runtime in the guest loads the spec's filter.
			Seccomp: &features.Seccomp{Enabled: &yes},
		},
		Annotations: map[string]string{
			"io.hull.vm":           "each sandbox runs in its own QEMU VM",
			"io.hull.mountOptions": "hull acts on these on the host; the runtime in the guest applies them and all others",
			"io.hull.mountTypes":   strings.Join(mountTypes, ","),
		},
	}
}

// mountOptions lists the mount options hull acts on itself: those that
// place a bind's tree in the share, and those it hands on to the tree's
// submounts.
func mountOptions() []string {
	opts := slices.Collect(maps.Keys(bindModeOptions))
	for o := range submountOptions {
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	slices.Sort(opts)
	return opts
}
