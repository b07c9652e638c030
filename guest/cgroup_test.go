package guest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/hull-runtime/hull/agentproto"
)

// writeCgroup fills a fake v1 cgroup of container id under root: files maps
// "controller/file" to its content.
func writeCgroup(t *testing.T, root, id string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		ctrl, file := filepath.Split(name)
		dir := filepath.Join(root, ctrl, cgroupsPath(id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The files as a 6.1 guest kernel writes them (memory.stat cut short).
var cgroupFiles = map[string]string{
	"memory/memory.usage_in_bytes":     "1048576\n",
	"memory/memory.limit_in_bytes":     "33554432\n",
	"memory/memory.max_usage_in_bytes": "33554432\n",
	"memory/memory.failcnt":            "1234\n",
	"memory/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	"memory/memory.stat": "cache 8192\nrss 4096\ninactive_file 1024\n" +
		"hierarchical_memory_limit 33554432\n" +
		"total_cache 81920\ntotal_rss 40960\ntotal_rss_huge 0\ntotal_inactive_file 10240\ntotal_active_file 0\n",
	"cpu,cpuacct/cpuacct.usage":      "3000000000\n",
	"cpu,cpuacct/cpuacct.usage_user": "2000000000\n",
	"cpu,cpuacct/cpuacct.usage_sys":  "1000000000\n",
	"pids/pids.current":              "3\n",
	"pids/pids.max":                  "max\n",
}

func TestStatsContainer(t *testing.T) {
	root := t.TempDir()
	writeCgroup(t, root, "c1", cgroupFiles)
	svc := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, CgroupRoot: root})
	svc.containers["c1"] = &container{id: "c1", init: &process{exited: make(chan struct{})}, execs: map[string]*process{}}
	stats := func() *agentproto.StatsContainerResponse {
		t.Helper()
		s, err := svc.StatsContainer(context.Background(), &agentproto.ContainerRequest{ContainerId: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	want := &agentproto.StatsContainerResponse{
		MemoryUsageBytes:        1 << 20,
		MemoryLimitBytes:        32 << 20,
		MemoryMaxUsageBytes:     32 << 20,
		MemoryFailcnt:           1234,
		MemoryRssBytes:          40960,
		MemoryCacheBytes:        81920,
		MemoryInactiveFileBytes: 10240,
		OomKills:                2,
		CpuUsageNs:              3e9,
		CpuUserNs:               2e9,
		CpuSystemNs:             1e9,
		PidsCurrent:             3,
		PidsLimit:               0, // "max"
	}
	if got := stats(); !proto.Equal(got, want) {
		t.Errorf("stats:\n got %v\nwant %v", got, want)
	}

	writeCgroup(t, root, "c1", map[string]string{"pids/pids.max": "100\n"})
	if got := stats().PidsLimit; got != 100 {
		t.Errorf("pids.max 100: pids_limit %d", got)
	}

	// A kernel before 4.13 has no oom_kill line, one without
	// CONFIG_CGROUP_PIDS no pids hierarchy: those read 0, the rest stays.
	writeCgroup(t, root, "c1", map[string]string{"memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"})
	if err := os.RemoveAll(filepath.Join(root, "pids")); err != nil {
		t.Fatal(err)
	}
	got := stats()
	if got.OomKills != 0 || got.PidsCurrent != 0 || got.MemoryUsageBytes != 1<<20 {
		t.Errorf("without oom_kill and pids: %v", got)
	}
}

// createRuntime plays runc create (and exec) for a terminal process that
// the test ends by publishing its exit to the reaper.
type createRuntime struct{ execRuntime }

const fakeInitPID = 1<<30 + 1

func (createRuntime) Create(_ context.Context, _, _ string, opts *runc.CreateOpts) error {
	if err := sendPtyMaster(opts.ConsoleSocket.Path()); err != nil {
		return err
	}
	return os.WriteFile(opts.PidFile, []byte(strconv.Itoa(fakeInitPID)), 0o600)
}

// WaitProcess says an init process was OOM-killed when its container's
// memory cgroup counted an OOM kill, as read when the process exited: by
// the time the host asks, runc delete may have removed the cgroup.
func TestWaitProcessReportsOOMKill(t *testing.T) {
	for _, tc := range []struct {
		name    string
		oomKill string
		want    bool
	}{
		{"oom kill", "1", true},
		{"no oom kill", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cgroups := filepath.Join(dir, "cgroup")
			writeCgroup(t, cgroups, "c1", map[string]string{
				"memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill " + tc.oomKill + "\n",
			})
			rt := createRuntime{}
			svc := NewService(Config{Runtime: func(string) Runtime { return rt }, Reaper: newTestReaper(),
				ShareDir: filepath.Join(dir, "share"), BundleDir: filepath.Join(dir, "bundles"), CgroupRoot: cgroups})
			ctx := context.Background()
			spec, _ := json.Marshal(&specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "c1/rootfs"},
				Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Terminal: true}})
			if _, err := svc.CreateContainer(ctx, &agentproto.CreateContainerRequest{ContainerId: "c1", Spec: spec}); err != nil {
				t.Fatalf("create: %v", err)
			}
			t.Cleanup(func() {
				_, _ = svc.RemoveContainer(ctx, &agentproto.RemoveContainerRequest{ContainerId: "c1", Force: true})
			})
			if _, err := svc.ExecProcess(ctx, &agentproto.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: ttyExec}); err != nil {
				t.Fatalf("exec: %v", err)
			}

			svc.cfg.Reaper.publish(runc.Exit{Pid: fakeExecPID, Status: 137})
			exec, err := svc.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1", ExecId: "e1"})
			if err != nil {
				t.Fatalf("wait for the exec: %v", err)
			}
			if exec.Status != 137 || exec.OomKilled {
				t.Errorf("exec: status %d, oom_killed %v; want 137 and false whatever the cgroup counts", exec.Status, exec.OomKilled)
			}

			svc.cfg.Reaper.publish(runc.Exit{Pid: fakeInitPID, Status: 137})
			c, err := svc.container("c1")
			if err != nil {
				t.Fatal(err)
			}
			<-c.init.exited
			// As runc delete would once the init process has exited.
			if err := os.RemoveAll(filepath.Join(cgroups, "memory", cgroupsPath("c1"))); err != nil {
				t.Fatal(err)
			}
			init, err := svc.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1"})
			if err != nil {
				t.Fatalf("wait for init: %v", err)
			}
			if init.Status != 137 || init.OomKilled != tc.want {
				t.Errorf("init: status %d, oom_killed %v; want 137 and %v", init.Status, init.OomKilled, tc.want)
			}
		})
	}
}
