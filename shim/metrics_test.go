package shim

import (
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
	"google.golang.org/protobuf/proto"

	"github.com/hull-runtime/hull/agentproto"
)

func TestMetrics(t *testing.T) {
	in := &agentproto.StatsContainerResponse{
		CpuUsageNs: 1, CpuUserNs: 2, CpuSystemNs: 3,
		MemoryUsageBytes: 4, MemoryLimitBytes: 5, MemoryMaxUsageBytes: 6, MemoryFailcnt: 7,
		MemoryRssBytes: 8, MemoryCacheBytes: 9, MemoryInactiveFileBytes: 10,
		PidsCurrent: 11, PidsLimit: 12, OomKills: 13,
	}
	a, err := metrics(in)
	if err != nil {
		t.Fatal(err)
	}
	// What containerd's CRI and `ctr task metrics` switch on.
	if a.TypeUrl != "io.containerd.cgroups.v1.Metrics" {
		t.Fatalf("type URL %q, want io.containerd.cgroups.v1.Metrics", a.TypeUrl)
	}
	var m stats.Metrics
	if err := proto.Unmarshal(a.Value, &m); err != nil {
		t.Fatal(err)
	}
	want := &stats.Metrics{
		CPU: &stats.CPUStat{Usage: &stats.CPUUsage{Total: 1, User: 2, Kernel: 3}},
		Memory: &stats.MemoryStat{
			Usage: &stats.MemoryEntry{Usage: 4, Limit: 5, Max: 6, Failcnt: 7},
			RSS:   8, TotalRSS: 8, Cache: 9, TotalCache: 9, InactiveFile: 10, TotalInactiveFile: 10,
		},
		Pids:             &stats.PidsStat{Current: 11, Limit: 12},
		MemoryOomControl: &stats.MemoryOomControl{OomKill: 13},
	}
	if !proto.Equal(&m, want) {
		t.Errorf("metrics\n got %v\nwant %v", &m, want)
	}
}
