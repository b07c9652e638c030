package pod

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A pod's sandbox container is sized by containerd's sizing annotations
// (the sum of its containers), over what its own spec asks.
func TestSandboxResources(t *testing.T) {
	shares := uint64(2)
	pause := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}},
		Annotations: map[string]string{
			annSandboxCPUQuota: "20000", annSandboxCPUPeriod: "100000", annSandboxCPUShares: "512",
			annSandboxMemory: "268435456", "other": "x",
		}}
	res := SandboxResources(pause)
	if res == nil || res.CPU == nil || res.Memory == nil {
		t.Fatalf("SandboxResources = %+v, want CPU and memory", res)
	}
	if *res.CPU.Quota != 20000 || *res.CPU.Period != 100000 || *res.CPU.Shares != 512 || *res.Memory.Limit != 256<<20 {
		t.Errorf("quota %d period %d shares %d memory %d", *res.CPU.Quota, *res.CPU.Period, *res.CPU.Shares, *res.Memory.Limit)
	}
	if *pause.Linux.Resources.CPU.Shares != 2 {
		t.Error("the spec's own resources were changed")
	}
	vcpus, mem := SizeVM(HypervisorConfig{DefaultVCPUs: 1, DefaultMemory: 512, MemoryOverhead: 128}, pause)
	if vcpus != 1 || mem != 256+128 {
		t.Errorf("SizeVM = %d vCPUs, %d MiB, want 1, %d", vcpus, mem, 256+128)
	}

	for name, spec := range map[string]*specs.Spec{
		"nothing":         {},
		"bad annotations": {Annotations: map[string]string{annSandboxCPUQuota: "-1", annSandboxMemory: "lots"}},
	} {
		if res := SandboxResources(spec); res != nil {
			t.Errorf("%s: SandboxResources = %+v, want nil", name, res)
		}
	}
	limit := int64(64 << 20)
	own := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}}
	if res := SandboxResources(own); res == nil || *res.Memory.Limit != limit || res.CPU != nil {
		t.Errorf("a lone container's own resources: %+v", res)
	}
}
