package guest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hull-runtime/hull/agentproto"
)

// cgroupsPath is the cgroup runc puts container id in, the same path in
// each v1 hierarchy.
func cgroupsPath(id string) string { return "/hull/" + id }

// cgroup reads a container's cgroup v1 files. A file it cannot read or
// parse reads 0: a counter the guest kernel lacks, or a cgroup runc has
// already removed.
type cgroup struct {
	root string // where the hierarchies are mounted (Config.CgroupRoot)
	path string // cgroupsPath
}

func (s *Service) cgroup(id string) cgroup {
	return cgroup{root: s.cfg.CgroupRoot, path: cgroupsPath(id)}
}

func (c cgroup) read(controller, file string) []byte {
	b, _ := os.ReadFile(filepath.Join(c.root, controller, c.path, file))
	return b
}

// number reads a file holding one number; "max" (no limit) reads 0.
func (c cgroup) number(controller, file string) uint64 {
	n, _ := strconv.ParseUint(string(bytes.TrimSpace(c.read(controller, file))), 10, 64)
	return n
}

// keyed reads a file of "key value" lines, such as memory.stat.
func (c cgroup) keyed(controller, file string) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(c.read(controller, file)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// oomKills counts the container's processes the OOM killer killed
// (memory.oom_control's oom_kill, kernel 4.13 and later).
func (c cgroup) oomKills() uint64 {
	return c.keyed("memory", "memory.oom_control")["oom_kill"]
}

func (c cgroup) stats() *agentproto.StatsContainerResponse {
	mem := c.keyed("memory", "memory.stat")
	return &agentproto.StatsContainerResponse{
		MemoryUsageBytes:        c.number("memory", "memory.usage_in_bytes"),
		MemoryLimitBytes:        c.number("memory", "memory.limit_in_bytes"),
		MemoryMaxUsageBytes:     c.number("memory", "memory.max_usage_in_bytes"),
		MemoryFailcnt:           c.number("memory", "memory.failcnt"),
		MemoryRssBytes:          mem["total_rss"],
		MemoryCacheBytes:        mem["total_cache"],
		MemoryInactiveFileBytes: mem["total_inactive_file"],
		OomKills:                c.oomKills(),
		CpuUsageNs:              c.number("cpu,cpuacct", "cpuacct.usage"),
		CpuUserNs:               c.number("cpu,cpuacct", "cpuacct.usage_user"),
		CpuSystemNs:             c.number("cpu,cpuacct", "cpuacct.usage_sys"),
		PidsCurrent:             c.number("pids", "pids.current"),
		PidsLimit:               c.number("pids", "pids.max"),
	}
}
