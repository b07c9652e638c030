package pod

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
)

// A namespace path in a spec names a namespace on the host, which a VM
// cannot join. It can only mean one of two things to hull: a namespace
// held by the host stand-in of another hull container (its proxy, whose PID
// callers see as the container's), which becomes that container's namespace
// in the guest; or, for the network, the namespace whose interfaces the
// sandbox's VM takes over. Anything else is a host process's namespace and
// is refused. The path itself never reaches the guest, where it would name
// something else.

// NSID identifies a namespace: the device and inode of its nsfs file.
type NSID struct{ Dev, Ino uint64 }

// NSFile is what the kernel says about a namespace file.
type NSFile struct {
	Type specs.LinuxNamespaceType
	ID   NSID
}

// NSProbe reads a namespace file; ProbeNS is the real one.
type NSProbe func(path string) (NSFile, error)

// nsKinds are the namespace types: their /proc/PID/ns file and clone flag.
var nsKinds = []struct {
	typ  specs.LinuxNamespaceType
	file string
	flag int
}{
	{specs.PIDNamespace, "pid", unix.CLONE_NEWPID},
	{specs.NetworkNamespace, "net", unix.CLONE_NEWNET},
	{specs.MountNamespace, "mnt", unix.CLONE_NEWNS},
	{specs.IPCNamespace, "ipc", unix.CLONE_NEWIPC},
	{specs.UTSNamespace, "uts", unix.CLONE_NEWUTS},
	{specs.UserNamespace, "user", unix.CLONE_NEWUSER},
	{specs.CgroupNamespace, "cgroup", unix.CLONE_NEWCGROUP},
	{specs.TimeNamespace, "time", unix.CLONE_NEWTIME},
}

// proxyNSTypes are the namespaces each container's proxy holds of its own,
// so that /proc/<container pid>/ns/<type> names that container and no
// other (the network is the sandbox's, see ocicli.ProxySpec.NetNS).
var proxyNSTypes = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace,
}

// ProxyCloneFlags creates proxyNSTypes.
const ProxyCloneFlags = unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP

func nsFileName(t specs.LinuxNamespaceType) string {
	for _, k := range nsKinds {
		if k.typ == t {
			return k.file
		}
	}
	return ""
}

// nsGetNSType is ioctl NS_GET_NSTYPE (_IO(0xb7, 0x3), Linux 4.11): the
// CLONE_NEW* flag of a namespace file.
const nsGetNSType = 0xb703

// ProbeNS opens a namespace file (a /proc/PID/ns entry or a bind mount of
// one) and asks the kernel for its type and identity.
func ProbeNS(path string) (NSFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return NSFile{}, err
	}
	defer f.Close()
	flag, err := unix.IoctlRetInt(int(f.Fd()), nsGetNSType)
	if err != nil {
		return NSFile{}, fmt.Errorf("%s is not a namespace: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return NSFile{}, err
	}
	nf := NSFile{ID: NSID{Dev: st.Dev, Ino: st.Ino}}
	for _, k := range nsKinds {
		if k.flag == flag {
			nf.Type = k.typ
		}
	}
	if nf.Type == "" {
		return NSFile{}, fmt.Errorf("%s is a namespace of unknown type %#x", path, flag)
	}
	return nf, nil
}

// NSOwner is the hull container (and its sandbox) a namespace belongs to.
type NSOwner struct{ Container, Sandbox string }

// NSIndex maps the namespaces hull containers hold to their containers.
type NSIndex map[NSID]NSOwner

// NSHolder is a hull container as seen from the host: its proxy's PID (0
// when gone) and the network namespace it was created in.
type NSHolder struct {
	Container, Sandbox string
	PID                int
	NetNS              string
}

// IndexNamespaces probes the namespaces of the holders: each proxy's own
// (proxyNSTypes), each network namespace. The host's namespaces (host)
// are never a container's, whatever a holder shares with it: a proxy
// from before proxies held namespaces of their own lives in the host's.
func IndexNamespaces(holders []NSHolder, host map[NSID]bool, probe NSProbe) NSIndex {
	idx := NSIndex{}
	add := func(path string, h NSHolder) {
		f, err := probe(path)
		if err != nil || host[f.ID] {
			return
		}
		if _, ok := idx[f.ID]; !ok {
			idx[f.ID] = NSOwner{Container: h.Container, Sandbox: h.Sandbox}
		}
	}
	for _, h := range holders {
		if h.PID > 0 {
			for _, t := range append(proxyNSTypes, specs.NetworkNamespace) {
				add("/proc/"+strconv.Itoa(h.PID)+"/ns/"+nsFileName(t), h)
			}
		}
		if h.NetNS != "" {
			add(h.NetNS, h)
		}
	}
	return idx
}

// HostNamespaces are the namespaces hull itself runs in: the host's.
func HostNamespaces(probe NSProbe) map[NSID]bool {
	host := map[NSID]bool{}
	for _, k := range nsKinds {
		if f, err := probe("/proc/self/ns/" + k.file); err == nil {
			host[f.ID] = true
		}
	}
	return host
}

// NSPlan is what a container's namespace paths come to.
type NSPlan struct {
	// Sandbox is the sandbox whose containers the paths name, if any.
	Sandbox string
	// Join maps a namespace type to the container whose namespace of that
	// type the new container shares in the guest.
	Join map[specs.LinuxNamespaceType]string
	// NetNS is the path of a network namespace that is no hull
	// container's: the one a new sandbox takes over.
	NetNS string
}

// ErrHostNetwork is a container asking for the host's network.
var ErrHostNetwork = errors.New("host networking cannot work in a VM: the container needs a network namespace of its own (drop --net=host)")

// PlanNamespaces classifies the namespace paths of a spec against the
// namespaces of hull containers (idx) and of the host (host): a path must
// name a namespace of its entry's type (as runc checks), and either a hull
// container's namespace or, for the network, a namespace other than the
// host's. All the containers named must be in one sandbox.
func PlanNamespaces(nss []specs.LinuxNamespace, idx NSIndex, host map[NSID]bool, probe NSProbe) (NSPlan, error) {
	plan := NSPlan{Join: map[specs.LinuxNamespaceType]string{}}
	for _, n := range nss {
		if n.Path == "" {
			continue
		}
		f, err := probe(n.Path)
		if err != nil {
			return NSPlan{}, fmt.Errorf("%s namespace path %s: %w", n.Type, n.Path, err)
		}
		if f.Type != n.Type {
			return NSPlan{}, fmt.Errorf("%s namespace path %s: wrong namespace type: it is %s, not %s", n.Type, n.Path, f.Type, n.Type)
		}
		owner, sibling := idx[f.ID]
		switch {
		case sibling:
			if plan.Sandbox != "" && plan.Sandbox != owner.Sandbox {
				return NSPlan{}, fmt.Errorf("%s namespace path %s: it is container %s's, in sandbox %s, but other namespaces are sandbox %s's; a container runs in one VM",
					n.Type, n.Path, owner.Container, owner.Sandbox, plan.Sandbox)
			}
			plan.Sandbox = owner.Sandbox
			if n.Type != specs.NetworkNamespace {
				// The network is the VM's, shared by all its containers.
				plan.Join[n.Type] = owner.Container
			}
		case n.Type == specs.NetworkNamespace && host[f.ID]:
			return NSPlan{}, ErrHostNetwork
		case n.Type == specs.NetworkNamespace:
			plan.NetNS = n.Path
		default:
			return NSPlan{}, fmt.Errorf("%s namespace path %s: it is a host process's namespace, not a hull container's; a container in a VM cannot join a host namespace", n.Type, n.Path)
		}
	}
	if plan.Sandbox != "" && plan.NetNS != "" {
		return NSPlan{}, fmt.Errorf("network namespace path %s: it is not sandbox %s's, whose containers' other namespaces this container joins; a container runs in one VM", plan.NetNS, plan.Sandbox)
	}
	return plan, nil
}

// Apply points the namespaces the plan joins at their containers, as
// "container:ID", which the agent resolves to that container's namespace in
// the VM.
func (p NSPlan) Apply(nss []specs.LinuxNamespace) []specs.LinuxNamespace {
	out := make([]specs.LinuxNamespace, len(nss))
	for i, n := range nss {
		if cid, ok := p.Join[n.Type]; ok && n.Path != "" {
			n.Path = agentproto.ContainerNSPrefix + cid
		}
		out[i] = n
	}
	return out
}

// guestNamespaces readies the namespaces for the guest: the network's path
// goes (every container uses the VM's network) and "container:ID" stays;
// any other path is refused: in the guest it would name something else.
func guestNamespaces(nss []specs.LinuxNamespace) ([]specs.LinuxNamespace, error) {
	out := make([]specs.LinuxNamespace, len(nss))
	for i, n := range nss {
		switch {
		case n.Path == "", strings.HasPrefix(n.Path, agentproto.ContainerNSPrefix):
		case n.Type == specs.NetworkNamespace:
			n.Path = ""
		default:
			return nil, fmt.Errorf("%s namespace path %s: a host path cannot be joined in the guest", n.Type, n.Path)
		}
		out[i] = n
	}
	return out, nil
}
