package ocicli

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/pod"
)

// Placement is where a new container goes.
type Placement struct {
	// Sandbox is the sandbox the container runs in; Owner says it is the
	// sandbox's first container, which creates it.
	Sandbox string
	Owner   bool
	// NS is what the container's namespace paths come to.
	NS pod.NSPlan
}

// Place decides the sandbox of a new container, the one place that does:
// the sandbox its pod annotations name (CRI-O, containerd's CRI); else the
// sandbox whose containers' namespaces its namespace paths name (podman's
// pods, docker's --net/--ipc=container:); else a sandbox of its own.
func (r *Runtime) Place(id string, spec *specs.Spec) (Placement, error) {
	var nss []specs.LinuxNamespace
	if spec.Linux != nil {
		nss = spec.Linux.Namespaces
	}
	host := pod.HostNamespaces(pod.ProbeNS)
	var idx pod.NSIndex
	for _, n := range nss {
		if n.Path != "" {
			idx = pod.IndexNamespaces(r.nsHolders(), host, pod.ProbeNS)
			break
		}
	}
	plan, err := pod.PlanNamespaces(nss, idx, host, pod.ProbeNS)
	if err != nil {
		return Placement{}, err
	}
	return place(id, spec.Annotations, plan)
}

// place is Place's decision once the namespace paths are classified.
func place(id string, annotations map[string]string, plan pod.NSPlan) (Placement, error) {
	sid, owner := pod.SandboxOf(id, annotations)
	switch {
	case plan.Sandbox == "":
	case !owner && plan.Sandbox != sid:
		return Placement{}, fmt.Errorf("its pod annotations put it in sandbox %s, but its namespace paths are sandbox %s's", sid, plan.Sandbox)
	case pod.IsPodSandbox(annotations):
		return Placement{}, fmt.Errorf("its pod annotations make it a sandbox of its own, but its namespace paths are sandbox %s's", plan.Sandbox)
	case owner:
		sid, owner = plan.Sandbox, false
	}
	if !owner && plan.NetNS != "" {
		return Placement{}, fmt.Errorf("network namespace path %s: it is not sandbox %s's; the containers of a sandbox share its VM's network", plan.NetNS, sid)
	}
	return Placement{Sandbox: sid, Owner: owner, NS: plan}, nil
}

// nsHolders are the containers in the store, for IndexNamespaces.
func (r *Runtime) nsHolders() []pod.NSHolder {
	ids, _ := r.Store.IDs()
	var hs []pod.NSHolder
	for _, id := range ids {
		st, err := r.Store.Load(id)
		if err != nil {
			continue
		}
		h := pod.NSHolder{Container: st.ID, Sandbox: st.SandboxID, NetNS: st.NetNS}
		if st.Proxy.Alive() {
			h.PID = st.Proxy.PID
		}
		hs = append(hs, h)
	}
	return hs
}

// netnsOf returns the network namespace a new container lives in on the
// host (its proxy does): the spec's path, or for a sandbox's first
// container asking for a new one, a namespace hull creates (newNS); a
// later container without a path uses its sandbox's. Without a network
// namespace the container would want the host's network, which a VM cannot
// give.
func (r *Runtime) netnsOf(spec *specs.Spec, p Placement) (path string, newNS bool, err error) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			switch {
			case ns.Path != "":
				// Either the namespace the new sandbox takes over, or
				// (pod.PlanNamespaces checked) its sandbox's.
				return ns.Path, false, nil
			case p.Owner:
				return r.Store.NetNSPath(p.Sandbox), true, nil
			}
			if st, err := r.Store.Load(p.Sandbox); err == nil && st.NetNS != "" {
				return st.NetNS, false, nil
			}
			return r.Store.NetNSPath(p.Sandbox), false, nil
		}
	}
	return "", false, pod.ErrHostNetwork
}
