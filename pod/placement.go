package pod

// Pod annotations of CRI-O and containerd's CRI.
const (
	CRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	CRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	CRIContainerType  = "io.kubernetes.cri.container-type"
	CRISandboxID      = "io.kubernetes.cri.sandbox-id"
)

var podAnnotations = [][2]string{{CRIOContainerType, CRIOSandboxID}, {CRIContainerType, CRISandboxID}}

// SandboxOf tells which sandbox a container belongs to by its pod
// annotations and whether it is the one that creates it: a pod's app
// containers join the VM of their sandbox container; without pod
// annotations each container is its own (Place also looks at namespaces).
func SandboxOf(id string, annotations map[string]string) (sid string, owner bool) {
	for _, k := range podAnnotations {
		if t, ok := annotations[k[0]]; ok && t == "container" {
			if s := annotations[k[1]]; s != "" && s != id {
				return s, false
			}
		}
	}
	return id, true
}

// isPodSandbox reports whether the annotations make a container a pod's
// sandbox container.
func IsPodSandbox(annotations map[string]string) bool {
	for _, k := range podAnnotations {
		if annotations[k[0]] == "sandbox" {
			return true
		}
	}
	return false
}
