package pod

import (
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SizeVM derives the VM's vCPUs and memory from the spec: the container's
// memory limit plus a fixed overhead for the guest kernel and agent (not on
// top of a 2 GiB default as Kata does), and its CPU quota rounded up.
func SizeVM(h HypervisorConfig, spec *specs.Spec) (vcpus, memMiB int) {
	vcpus, memMiB = h.DefaultVCPUs, h.DefaultMemory
	res := SandboxResources(spec)
	if res == nil {
		return
	}
	if res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		memMiB = int((*res.Memory.Limit+(1<<20)-1)>>20) + h.MemoryOverhead
	}
	if res.CPU != nil && res.CPU.Quota != nil && *res.CPU.Quota > 0 && res.CPU.Period != nil && *res.CPU.Period > 0 {
		n := int((*res.CPU.Quota + int64(*res.CPU.Period) - 1) / int64(*res.CPU.Period))
		if n > vcpus {
			vcpus = n
		}
	}
	if vcpus > 64 {
		vcpus = 64
	}
	return
}

// containerd's CRI sizing annotations of a pod's sandbox container: the sum
// of its containers' resources, which the kubelet (1.23+) gives in the
// PodSandboxConfig and containerd (1.6.7+) writes on the sandbox's spec, as
// Kata reads them.
const (
	annSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	annSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	annSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// SandboxResources are the resources a sandbox's VM and host cgroup are
// sized by: the spec's, with the CRI's sandbox sizing annotations in place
// of what they set (a pod's sandbox container asks for almost nothing
// itself). nil when there are none.
func SandboxResources(spec *specs.Spec) *specs.LinuxResources {
	var res specs.LinuxResources
	if spec.Linux != nil && spec.Linux.Resources != nil {
		res = *spec.Linux.Resources
	}
	found := spec.Linux != nil && spec.Linux.Resources != nil
	annInt := func(key string) (int64, bool) {
		v, err := strconv.ParseInt(spec.Annotations[key], 10, 64)
		return v, err == nil && v > 0
	}
	cpu := specs.LinuxCPU{}
	if res.CPU != nil {
		cpu = *res.CPU
	}
	cpuSet := false
	if v, ok := annInt(annSandboxCPUQuota); ok {
		cpu.Quota, cpuSet = &v, true
	}
	if v, ok := annInt(annSandboxCPUPeriod); ok {
		p := uint64(v)
		cpu.Period, cpuSet = &p, true
	}
	if v, ok := annInt(annSandboxCPUShares); ok {
		sh := uint64(v)
		cpu.Shares, cpuSet = &sh, true
	}
	if cpuSet {
		res.CPU, found = &cpu, true
	}
	if v, ok := annInt(annSandboxMemory); ok {
		mem := specs.LinuxMemory{}
		if res.Memory != nil {
			mem = *res.Memory
		}
		mem.Limit = &v
		res.Memory, found = &mem, true
	}
	if !found {
		return nil
	}
	return &res
}
