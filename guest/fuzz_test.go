package guest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// failingRuntime is a runc whose every call fails: handlers get as far as
// runc and no further.
type failingRuntime struct{}

var errNoRunc = errors.New("no runc in this test")

func (failingRuntime) Create(context.Context, string, string, *runc.CreateOpts) error {
	return errNoRunc
}
func (failingRuntime) Start(context.Context, string) error { return errNoRunc }
func (failingRuntime) Exec(context.Context, string, specs.Process, *runc.ExecOpts) error {
	return errNoRunc
}
func (failingRuntime) Kill(context.Context, string, int, *runc.KillOpts) error     { return errNoRunc }
func (failingRuntime) Delete(context.Context, string, *runc.DeleteOpts) error      { return errNoRunc }
func (failingRuntime) Pause(context.Context, string) error                         { return errNoRunc }
func (failingRuntime) Resume(context.Context, string) error                        { return errNoRunc }
func (failingRuntime) Update(context.Context, string, *specs.LinuxResources) error { return errNoRunc }
func (failingRuntime) Ps(context.Context, string) ([]int, error)                   { return nil, errNoRunc }

// FuzzCreateContainer feeds the agent's CreateContainer handler arbitrary
// IDs and specs: it must answer with an error, never panic, and leave
// nothing outside (or inside) its bundle directory.
func FuzzCreateContainer(f *testing.F) {
	good, _ := json.Marshal(&specs.Spec{Version: "1.0.2", Root: &specs.Root{Path: "c1/rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Mounts:  []specs.Mount{{Destination: "/v", Type: "bind", Source: "c1/volumes/x"}}})
	f.Add("c1", good)
	f.Add("../../etc", good)
	f.Add("c1", []byte(`{"root":{"path":"../../.."},"process":{}}`))
	f.Add("c1", []byte(`{"root":{"path":"c1/rootfs"},"process":{},"mounts":[{"type":"bind","source":"../../x"}]}`))
	f.Add("c1", []byte(`{"root":{"path":"x"},"process":{},"linux":{"namespaces":[{"type":"ipc","path":"container:nope"}],"sysctl":{"net.a..b":"1"}}}`))
	f.Fuzz(func(t *testing.T, id string, spec []byte) {
		dir := t.TempDir()
		bundles := filepath.Join(dir, "bundles")
		svc := NewService(Config{
			Runtime:  func(string) Runtime { return failingRuntime{} },
			ShareDir: filepath.Join(dir, "share"), BundleDir: bundles, CgroupRoot: dir,
			// Never the test host's /proc/sys.
			ProcSys: filepath.Join(dir, "bundles", "sys"),
		})
		_, err := svc.CreateContainer(context.Background(), &agentproto.CreateContainerRequest{ContainerId: id, Spec: spec})
		if err == nil {
			t.Fatal("create succeeded without runc")
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "bundles" {
				t.Fatalf("handler created %s outside its bundle dir", e.Name())
			}
		}
		if left, _ := os.ReadDir(bundles); len(left) != 0 {
			t.Fatalf("failed create left %v", left)
		}
	})
}

// FuzzParseCmdline: any kernel command line parses or errs, never panics.
func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 hull.port=hull.agent hull.share=hullshare")
	f.Add("hull.vsock=99999999999 hull.debug")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseCmdline(s)
		if err == nil && cfg.PortName == "" && cfg.VsockPort == 0 {
			t.Fatal("accepted a command line with no agent channel")
		}
		_ = strings.TrimSpace(s)
	})
}
