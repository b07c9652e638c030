package pod

import specs "github.com/opencontainers/runtime-spec/specs-go"

// SizeVM derives the VM's vCPUs and memory from the spec: the container's
// memory limit plus a fixed overhead for the guest kernel and agent (not on
// top of a 2 GiB default as Kata does), and its CPU quota rounded up.
func SizeVM(h HypervisorConfig, spec *specs.Spec) (vcpus, memMiB int) {
	vcpus, memMiB = h.DefaultVCPUs, h.DefaultMemory
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return
	}
	res := spec.Linux.Resources
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
