package shim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// testPod is a Service over a fake VM, with what a test looks at.
type testPod struct {
	svc    *Service
	guest  *fakeGuest
	pub    *fakePublisher
	exits  atomic.Int32 // calls of Options.Exit
	root   string
	netns  string // the sandbox's network namespace, as the CRI's
	taskID uint32 // the PID every task of the pod goes by
}

// newTestPod serves pod "sb". Its VM is fake; the rest is real: the share
// bind-mounts each container's rootfs, and the VM takes over the network
// namespace the CRI would have made (empty here). Both need root.
func newTestPod(t *testing.T) *testPod {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the pod's share bind-mounts the containers' rootfs, and its VM enters a network namespace")
	}
	// Unix socket paths (the VM's agent socket) must be under 108 bytes:
	// t.TempDir's can be longer.
	root, err := os.MkdirTemp("", "hull-shim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	netns := filepath.Join(root, "cni-netns")
	if err := pod.CreateNetNS(netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.RemoveNetNS(netns) })
	cfg := filepath.Join(root, "configuration.toml")
	// kvm: no probe; virtio-9p: no virtiofsd. The kernel and QEMU paths are
	// never used.
	if err := os.WriteFile(cfg, []byte("[hypervisor]\naccel = \"kvm\"\n[shared_fs]\ntype = \"virtio-9p\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &testPod{guest: newFakeGuest(), pub: newFakePublisher(), root: root, netns: netns, taskID: uint32(os.Getpid())}
	p.svc = NewService(Options{Namespace: "default", ID: "sb", Layout: Layout{Root: filepath.Join(root, "shim")},
		ConfigPath: cfg, Publisher: p.pub, NewVM: p.guest.newVM, Exit: func() { p.exits.Add(1) }})
	t.Cleanup(p.svc.Stop)
	return p
}

// bundle writes a bundle for container id of the pod: its sandbox
// container's if sandbox, an app container's otherwise, with the
// namespaces a CRI gives each.
func (p *testPod) bundle(t *testing.T, id string, sandbox bool, args ...string) string {
	t.Helper()
	dir := filepath.Join(p.root, "bundles", id)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	annotations := map[string]string{pod.CRIContainerType: "sandbox", pod.CRISandboxID: "sb"}
	nss := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: p.netns}}
	if !sandbox {
		annotations[pod.CRIContainerType] = "container"
		nsDir := "/proc/" + strconv.Itoa(int(p.taskID)) + "/ns/"
		nss = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace, Path: nsDir + "ipc"},
			{Type: specs.UTSNamespace, Path: nsDir + "uts"}, {Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace, Path: nsDir + "net"}}
	}
	spec := specs.Spec{Version: "1.2.0", Root: &specs.Root{Path: "rootfs"}, Annotations: annotations,
		Process: &specs.Process{Args: args, Cwd: "/"}, Linux: &specs.Linux{Namespaces: nss}}
	b, err := json.Marshal(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// create creates container id with no streams, and checks its TaskCreate.
func (p *testPod) create(t *testing.T, id string, sandbox bool, args ...string) {
	t.Helper()
	p.createIn(t, id, p.bundle(t, id, sandbox, args...))
}

func (p *testPod) createIn(t *testing.T, id, bundle string) {
	t.Helper()
	resp, err := p.svc.Create(context.Background(), &taskapi.CreateTaskRequest{ID: id, Bundle: bundle})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	if resp.Pid != p.taskID {
		t.Errorf("create %s: pid %d, want the VM's %d", id, resp.Pid, p.taskID)
	}
	e := p.pub.expect(t, topicCreate)[0].msg.(*eventstypes.TaskCreate)
	if e.ContainerID != id || e.Bundle != bundle || e.Pid != p.taskID {
		t.Errorf("TaskCreate %v", e)
	}
}

func (p *testPod) start(t *testing.T, id, eid string) {
	t.Helper()
	if _, err := p.svc.Start(context.Background(), &taskapi.StartRequest{ID: id, ExecID: eid}); err != nil {
		t.Fatalf("start %s %s: %v", id, eid, err)
	}
}

func (p *testPod) state(t *testing.T, id, eid string) *taskapi.StateResponse {
	t.Helper()
	st, err := p.svc.State(context.Background(), &taskapi.StateRequest{ID: id, ExecID: eid})
	if err != nil {
		t.Fatalf("state %s %s: %v", id, eid, err)
	}
	return st
}

func (p *testPod) wantStatus(t *testing.T, id, eid string, want task.Status) {
	t.Helper()
	if st := p.state(t, id, eid); st.Status != want {
		t.Fatalf("%s %s is %v, want %v", id, eid, st.Status, want)
	}
}

func (p *testPod) kill(t *testing.T, id, eid string, sig syscall.Signal) error {
	t.Helper()
	_, err := p.svc.Kill(context.Background(), &taskapi.KillRequest{ID: id, ExecID: eid, Signal: uint32(sig)})
	return err
}

func (p *testPod) wait(t *testing.T, id, eid string) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.svc.Wait(ctx, &taskapi.WaitRequest{ID: id, ExecID: eid})
	if err != nil {
		t.Fatalf("wait %s %s: %v", id, eid, err)
	}
	return resp.ExitStatus
}

func (p *testPod) delete(id, eid string) (*taskapi.DeleteResponse, error) {
	return p.svc.Delete(context.Background(), &taskapi.DeleteRequest{ID: id, ExecID: eid})
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if s, _ := status.FromError(err); err == nil || s.Code() != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

func wantExit(t *testing.T, e event, cid, id string, code uint32) {
	t.Helper()
	x, ok := e.msg.(*eventstypes.TaskExit)
	if !ok || x.ContainerID != cid || x.ID != id || x.ExitStatus != code || x.ExitedAt == nil {
		t.Fatalf("%s event %v, want the exit %d of %s/%s", e.topic, e.msg, code, cid, id)
	}
}

func TestServiceSandboxLifecycle(t *testing.T) {
	cgroups, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPod(t)
	ctx := context.Background()
	p.create(t, "sb", true, "pause")
	p.wantStatus(t, "sb", "", task.Status_CREATED)
	podDir := p.svc.o.Layout.PodDir("default", "sb")
	if _, err := os.Stat(filepath.Join(podDir, podStateFile)); err != nil {
		t.Fatalf("no pod state for a later delete: %v", err)
	}

	p.start(t, "sb", "")
	if e := p.pub.expect(t, topicStart)[0].msg.(*eventstypes.TaskStart); e.ContainerID != "sb" || e.Pid != p.taskID {
		t.Errorf("TaskStart %v", e)
	}
	p.wantStatus(t, "sb", "", task.Status_RUNNING)
	_, err = p.svc.Start(ctx, &taskapi.StartRequest{ID: "sb"})
	wantCode(t, "start of a running container", err, codes.FailedPrecondition)
	_, err = p.delete("sb", "")
	wantCode(t, "delete of a running container", err, codes.FailedPrecondition)

	if err := p.kill(t, "sb", "", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, "sb", ""); code != 137 {
		t.Errorf("wait: exit %d, want 137", code)
	}
	wantExit(t, p.pub.expect(t, topicExit)[0], "sb", "sb", 137)
	st := p.state(t, "sb", "")
	if st.Status != task.Status_STOPPED || st.ExitStatus != 137 || st.ExitedAt == nil {
		t.Errorf("state after the exit: %v", st)
	}
	wantCode(t, "kill of an exited process", p.kill(t, "sb", "", syscall.SIGKILL), codes.NotFound)

	resp, err := p.delete("sb", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != 137 || resp.Pid != p.taskID {
		t.Errorf("delete: %v", resp)
	}
	if e := p.pub.expect(t, topicDelete)[0].msg.(*eventstypes.TaskDelete); e.ContainerID != "sb" || e.ExitStatus != 137 {
		t.Errorf("TaskDelete %v", e)
	}
	// The sandbox's delete ends the pod: its VM and what the shim made.
	select {
	case <-p.guest.vm.Done():
	default:
		t.Error("the VM outlived the pod's sandbox")
	}
	if !p.guest.called("destroy") {
		t.Error("the VM was stopped without asking the guest to power off")
	}
	if _, err := os.Stat(podDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory after the sandbox's delete: %v", err)
	}
	if _, err := os.Stat(p.netns); err != nil {
		t.Errorf("the CRI's network namespace is the CRI's to remove: %v", err)
	}
	_, err = p.svc.State(ctx, &taskapi.StateRequest{ID: "sb"})
	wantCode(t, "state of a deleted container", err, codes.NotFound)

	if _, err := p.svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "sb"}); err != nil {
		t.Fatal(err)
	}
	if n := p.exits.Load(); n != 1 {
		t.Errorf("shutdown with no container left: Exit called %d times, want 1", n)
	}
	p.pub.none(t)
	if after, _ := os.ReadFile("/proc/self/cgroup"); string(after) != string(cgroups) {
		t.Errorf("a pod without cgroupsPath moved the shim's cgroups from\n%s to\n%s", cgroups, after)
	}
}

func TestServiceAppContainerJoinsSandbox(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	p.create(t, "sb", true, "pause")
	p.start(t, "sb", "")
	p.pub.expect(t, topicStart)

	// The app container's output goes to its FIFO.
	bundle := p.bundle(t, "app", false, "echo", "hello")
	fifo := filepath.Join(p.root, "app-stdout")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	output := make(chan string, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			output <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		output <- string(b)
	}()
	if _, err := p.svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "app", Bundle: bundle, Stdout: fifo}); err != nil {
		t.Fatal(err)
	}
	p.pub.expect(t, topicCreate)
	// It joins the sandbox container's namespaces in the guest, named by
	// the sandbox task's PID on the host, and the VM's network.
	gs := p.guest.spec("app")
	for _, n := range gs.Linux.Namespaces {
		want := ""
		if n.Type == specs.IPCNamespace || n.Type == specs.UTSNamespace {
			want = agentproto.ContainerNSPrefix + "sb"
		}
		if n.Path != want {
			t.Errorf("guest spec: %s namespace %q, want %q", n.Type, n.Path, want)
		}
	}
	if st := p.state(t, "app", ""); st.Status != task.Status_CREATED || st.Stdout != fifo || st.Bundle != bundle {
		t.Errorf("state %v", st)
	}
	p.start(t, "app", "")
	p.pub.expect(t, topicStart)

	// An exec: added, started, ended, deleted.
	pb, err := json.Marshal(&specs.Process{Args: []string{"sh"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	ps := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: pb}
	if _, err := p.svc.Exec(ctx, &taskapi.ExecProcessRequest{ID: "app", ExecID: "e1", Spec: ps}); err != nil {
		t.Fatal(err)
	}
	p.wantStatus(t, "app", "e1", task.Status_CREATED)
	_, err = p.svc.Exec(ctx, &taskapi.ExecProcessRequest{ID: "app", ExecID: "e1", Spec: ps})
	wantCode(t, "a second exec e1", err, codes.AlreadyExists)
	wantCode(t, "kill of an exec not started", p.kill(t, "app", "e1", syscall.SIGKILL), codes.FailedPrecondition)
	p.start(t, "app", "e1")
	p.wantStatus(t, "app", "e1", task.Status_RUNNING)
	_, err = p.delete("app", "e1")
	wantCode(t, "delete of a running exec", err, codes.FailedPrecondition)
	p.guest.exit("app", "e1", 3, false)
	if code := p.wait(t, "app", "e1"); code != 3 {
		t.Errorf("exec's exit %d, want 3", code)
	}
	ev := p.pub.expect(t, topicExecAdded, topicExecStarted, topicExit)
	if e := ev[1].msg.(*eventstypes.TaskExecStarted); e.ContainerID != "app" || e.ExecID != "e1" || e.Pid != p.taskID {
		t.Errorf("TaskExecStarted %v", e)
	}
	wantExit(t, ev[2], "app", "e1", 3)
	p.wantStatus(t, "app", "e1", task.Status_STOPPED)
	if resp, err := p.delete("app", "e1"); err != nil || resp.ExitStatus != 3 {
		t.Fatalf("delete of the exec: %v, %v", resp, err)
	}
	p.wantStatus(t, "app", "", task.Status_RUNNING)

	// Paused, it cannot be deleted; resumed, it runs again.
	if _, err := p.svc.Pause(ctx, &taskapi.PauseRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	p.wantStatus(t, "app", "", task.Status_PAUSED)
	_, err = p.delete("app", "")
	wantCode(t, "delete of a paused container", err, codes.FailedPrecondition)
	_, err = p.svc.Pause(ctx, &taskapi.PauseRequest{ID: "app"})
	wantCode(t, "pause of a paused container", err, codes.FailedPrecondition)
	if _, err := p.svc.Resume(ctx, &taskapi.ResumeRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	p.wantStatus(t, "app", "", task.Status_RUNNING)
	p.pub.expect(t, topicPaused, topicResumed)
	if !p.guest.called("pause app") || !p.guest.called("resume app") {
		t.Errorf("the guest was asked %q: want the pause and the resume of app", p.guest.calls)
	}

	if err := p.kill(t, "app", "", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, "app", ""); code != 143 {
		t.Errorf("app's exit %d, want 143", code)
	}
	wantExit(t, p.pub.expect(t, topicExit)[0], "app", "app", 143)
	select {
	case out := <-output:
		if out != "hello\n" {
			t.Errorf("app's output %q, want %q", out, "hello\n")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app's stdout FIFO never ended")
	}
	if _, err := p.delete("app", ""); err != nil {
		t.Fatal(err)
	}
	p.pub.expect(t, topicDelete)

	// The pod lives on with its sandbox: Shutdown leaves it be.
	if _, err := p.svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	if p.exits.Load() != 0 {
		t.Fatal("shutdown ended the shim with the pod's sandbox still there")
	}
	select {
	case <-p.guest.vm.Done():
		t.Fatal("shutdown stopped the VM with the pod's sandbox still there")
	default:
	}
	p.wantStatus(t, "sb", "", task.Status_RUNNING)
	p.pub.none(t)
}

func TestServiceOOMBeforeExit(t *testing.T) {
	p := newTestPod(t)
	p.create(t, "sb", true, "pause")
	p.start(t, "sb", "")
	p.pub.expect(t, topicStart)
	p.guest.exit("sb", "", 137, true)
	ev := p.pub.expect(t, topicOOM, topicExit)
	if e := ev[0].msg.(*eventstypes.TaskOOM); e.ContainerID != "sb" {
		t.Errorf("TaskOOM %v", e)
	}
	wantExit(t, ev[1], "sb", "sb", 137)
}

func TestServiceWaitReturnsOnceTheExitIsAnnounced(t *testing.T) {
	p := newTestPod(t)
	p.pub.slow = map[string]time.Duration{topicExit: 100 * time.Millisecond}
	p.create(t, "sb", true, "pause")
	p.start(t, "sb", "")
	p.pub.expect(t, topicStart)
	p.guest.exit("sb", "", 0, false)
	p.wait(t, "sb", "")
	// containerd deletes the task once Wait returns: its TaskDelete must
	// not overtake the TaskExit.
	select {
	case e := <-p.pub.events:
		wantExit(t, e, "sb", "sb", 0)
	default:
		t.Fatal("Wait returned before the exit was announced")
	}
	if _, err := p.delete("sb", ""); err != nil {
		t.Fatal(err)
	}
	p.pub.expect(t, topicDelete)
}

func TestServiceDeleteOfCreatedContainer(t *testing.T) {
	p := newTestPod(t)
	// A slow exit event must still come before the delete's.
	p.pub.slow = map[string]time.Duration{topicExit: 50 * time.Millisecond}
	p.create(t, "sb", true, "pause")
	// containerd deletes a task it never started (a failed start, a
	// cancelled run): the guest's process is killed, its exit reported
	// before the delete.
	p.guest.waiting(t, "sb", "")
	resp, err := p.delete("sb", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != 137 {
		t.Errorf("delete: exit %d, want 137", resp.ExitStatus)
	}
	wantExit(t, p.pub.expect(t, topicExit, topicDelete)[0], "sb", "sb", 137)
}

func TestServiceShutdownKeepsAPodWithContainers(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	p.create(t, "sb", true, "pause")
	if _, err := p.svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "sb"}); err != nil {
		t.Fatal(err)
	}
	if p.exits.Load() != 0 {
		t.Fatal("shutdown ended the shim of a pod with a container")
	}
	// Now: the shim goes whatever is left, its VM first.
	if _, err := p.svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "sb", Now: true}); err != nil {
		t.Fatal(err)
	}
	if p.exits.Load() != 1 {
		t.Fatal("shutdown now did not end the shim")
	}
	select {
	case <-p.guest.vm.Done():
	default:
		t.Fatal("the shim ended and left its VM")
	}
	// The container went with the VM.
	wantExit(t, p.pub.expect(t, topicExit)[0], "sb", "sb", 255)
}

func TestServiceProcessThatExitsAsItStarts(t *testing.T) {
	p := newTestPod(t)
	p.create(t, "sb", true, "true")
	// The guest reports the exit before it answers the start, as a
	// process as short as true can do.
	exited := make(chan event, 1)
	p.guest.mu.Lock()
	p.guest.onStart = func(cid string) {
		p.guest.exit(cid, "", 0, false)
		select {
		case e := <-p.pub.events:
			exited <- e // the shim published the exit before the start
		case <-time.After(300 * time.Millisecond):
		}
	}
	p.guest.mu.Unlock()
	p.start(t, "sb", "")
	var ev []event
	select {
	case e := <-exited:
		ev = append(ev, e)
	default:
	}
	for len(ev) < 2 {
		ev = append(ev, p.pub.next(t))
	}
	if ev[0].topic != topicStart || ev[1].topic != topicExit {
		t.Fatalf("events %s, %s: containerd must see the start before the exit", ev[0].topic, ev[1].topic)
	}
}

// editSpec rewrites the spec of a bundle.
func editSpec(t *testing.T, bundle string, edit func(*specs.Spec)) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	edit(&spec)
	if b, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func setNetNS(path string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Annotations = nil // a lone container, as ctr run makes
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = path
			}
		}
	}
}

func TestServiceNetworkNamespaces(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	podDir := p.svc.o.Layout.PodDir("default", "sb")

	// The host's network: its interfaces are not the VM's to take.
	bundle := p.bundle(t, "sb", true, "sh")
	editSpec(t, bundle, setNetNS("/proc/self/ns/net"))
	_, err := p.svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "sb", Bundle: bundle})
	if err == nil || !strings.Contains(err.Error(), pod.ErrHostNetwork.Error()) {
		t.Fatalf("create in the host's network namespace: %v, want %v", err, pod.ErrHostNetwork)
	}
	if _, err := os.Stat(podDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed create left the pod directory: %v", err)
	}

	// A network namespace without a path: the shim makes one for the pod,
	// and removes it with the pod.
	editSpec(t, bundle, setNetNS(""))
	p.createIn(t, "sb", bundle)
	netns := filepath.Join(podDir, netnsFile)
	if pod.IsHostNetNS(netns) {
		t.Fatalf("the namespace the shim made, %s, is taken for the host's", netns)
	}
	if _, err := p.delete("sb", ""); err != nil {
		t.Fatal(err)
	}
	p.pub.expect(t, topicExit, topicDelete)
	if _, err := os.Stat(netns); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pod's network namespace outlived it: %v", err)
	}
}

// The sandbox container deleted first (a forced pod removal): its VM goes
// with the app container still in it, which exits 255 and is then deleted
// without an error.
func TestServiceDeleteAfterTheSandbox(t *testing.T) {
	p := newTestPod(t)
	p.create(t, "sb", true, "pause")
	p.start(t, "sb", "")
	p.pub.expect(t, topicStart)
	p.create(t, "app", false, "sleep")
	p.start(t, "app", "")
	p.pub.expect(t, topicStart)
	if err := p.kill(t, "sb", "", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, "sb", "")
	if _, err := p.delete("sb", ""); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, "app", ""); code != 255 {
		t.Errorf("app exit %d, want 255", code)
	}
	if _, err := p.delete("app", ""); err != nil {
		t.Fatalf("delete of app after its sandbox: %v", err)
	}
}
