package shim

import (
	"github.com/containerd/cgroups/v3/cgroup1/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hull-runtime/hull/agentproto"
)

// metrics turns the guest's cgroup counters of a container into containerd's
// cgroup v1 metrics type, which `ctr task metrics` and the CRI's stats read.
func metrics(s *agentproto.StatsContainerResponse) (*anypb.Any, error) {
	m := &stats.Metrics{
		CPU: &stats.CPUStat{Usage: &stats.CPUUsage{Total: s.CpuUsageNs, User: s.CpuUserNs, Kernel: s.CpuSystemNs}},
		Memory: &stats.MemoryStat{
			Usage: &stats.MemoryEntry{Usage: s.MemoryUsageBytes, Limit: s.MemoryLimitBytes,
				Max: s.MemoryMaxUsageBytes, Failcnt: s.MemoryFailcnt},
			RSS: s.MemoryRssBytes, TotalRSS: s.MemoryRssBytes,
			Cache: s.MemoryCacheBytes, TotalCache: s.MemoryCacheBytes,
			InactiveFile: s.MemoryInactiveFileBytes, TotalInactiveFile: s.MemoryInactiveFileBytes,
		},
		Pids:             &stats.PidsStat{Current: s.PidsCurrent, Limit: s.PidsLimit},
		MemoryOomControl: &stats.MemoryOomControl{OomKill: s.OomKills},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: string(m.ProtoReflect().Descriptor().FullName()), Value: b}, nil
}
