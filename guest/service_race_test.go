package guest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

// execRuntime is a runc whose exec starts a terminal process as runc does:
// it sends a pty master to the console socket and writes the PID file. When
// entered is set, Exec reports there and waits for proceed first.
type execRuntime struct {
	failingRuntime
	entered chan<- struct{}
	proceed <-chan struct{}
}

// fakeExecPID is the PID the fake writes; nothing ever signals it.
const fakeExecPID = 1 << 30

func (r execRuntime) Exec(_ context.Context, _ string, _ specs.Process, opts *runc.ExecOpts) error {
	if r.entered != nil {
		r.entered <- struct{}{}
		<-r.proceed
	}
	if err := sendPtyMaster(opts.ConsoleSocket.Path()); err != nil {
		return err
	}
	// The bundle may be gone: this plays a runc exec that won its race
	// against the container's removal.
	if err := os.MkdirAll(filepath.Dir(opts.PidFile), 0o700); err != nil {
		return err
	}
	return os.WriteFile(opts.PidFile, []byte(strconv.Itoa(fakeExecPID)), 0o600)
}

func (execRuntime) Delete(context.Context, string, *runc.DeleteOpts) error { return nil }

// sendPtyMaster plays runc's side of --console-socket.
func sendPtyMaster(socket string) error {
	master, name, err := console.NewPty()
	if err != nil {
		return err
	}
	defer master.Close()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _, err = conn.(*net.UnixConn).WriteMsgUnix([]byte(name), unix.UnixRights(int(master.Fd())), nil)
	return err
}

// raceService is an agent with one running container c1 whose runc is rt.
func raceService(t *testing.T, rt Runtime) *Service {
	t.Helper()
	svc := NewService(Config{Runtime: func(string) Runtime { return rt }, Reaper: newTestReaper(), BundleDir: t.TempDir()})
	bundle := filepath.Join(svc.cfg.BundleDir, "c1")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	svc.containers["c1"] = &container{id: "c1", bundle: bundle, runc: rt,
		init: &process{exited: make(chan struct{})}, execs: map[string]*process{}}
	return svc
}

var ttyExec = []byte(`{"args":["sh"],"cwd":"/","terminal":true}`)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// An exec that finishes starting after its container was removed must not
// be added to the removed container, and removal must not trip over the
// exec's reservation.
func TestRemoveContainerWhileExecStarts(t *testing.T) {
	entered, proceed := make(chan struct{}), make(chan struct{})
	svc := raceService(t, execRuntime{entered: entered, proceed: proceed})
	ctx := context.Background()
	before := openFDs(t)

	errc := make(chan error, 1)
	go func() {
		_, err := svc.ExecProcess(ctx, &agentproto.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: ttyExec})
		errc <- err
	}()
	<-entered // e1 is reserved and in runc exec
	if _, err := svc.RemoveContainer(ctx, &agentproto.RemoveContainerRequest{ContainerId: "c1", Force: true}); err != nil {
		t.Fatalf("remove while an exec starts: %v", err)
	}
	close(proceed)
	if err := <-errc; status.Code(err) != codes.NotFound {
		t.Errorf("exec into a container removed while it started: %v, want NotFound", err)
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d fds open after exec and remove, %d before: the exec's terminal leaked", n, before)
	}
}

// ExecProcess and RemoveContainer racing, many times (run with -race): no
// panic, no data race, and every exec's streams released by one side.
func TestExecRacesRemoveContainer(t *testing.T) {
	ctx := context.Background()
	// One round first, so that fds the runtime opens once (the poller) are
	// not counted as leaks.
	runExecRemoveRace(t, ctx)
	before := openFDs(t)
	for i := 0; i < 200; i++ {
		runExecRemoveRace(t, ctx)
	}
	// The last round's exit is published as the round ends; the streams
	// it releases close on their own goroutines, which a loaded host may
	// run late. A leak stays; a late close does not.
	n := openFDs(t)
	for deadline := time.Now().Add(5 * time.Second); n != before && time.Now().Before(deadline); n = openFDs(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if n != before {
		t.Errorf("%d fds open after the races, %d before: an exec's terminal leaked", n, before)
	}
}

func runExecRemoveRace(t *testing.T, ctx context.Context) {
	t.Helper()
	svc := raceService(t, execRuntime{})
	var wg sync.WaitGroup
	wg.Add(2)
	var execErr, removeErr error
	go func() {
		defer wg.Done()
		_, execErr = svc.ExecProcess(ctx, &agentproto.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: ttyExec})
	}()
	go func() {
		defer wg.Done()
		_, removeErr = svc.RemoveContainer(ctx, &agentproto.RemoveContainerRequest{ContainerId: "c1", Force: true})
	}()
	wg.Wait()
	if removeErr != nil {
		t.Fatalf("remove: %v", removeErr)
	}
	if code := status.Code(execErr); code != codes.OK && code != codes.NotFound && code != codes.Unknown {
		t.Fatalf("exec racing remove: %v, want success, NotFound or a failed runc exec", execErr)
	}
	if len(svc.containers) != 0 {
		t.Fatalf("containers left after remove: %v", svc.containers)
	}
	svc.cfg.Reaper.publish(runc.Exit{Pid: fakeExecPID})
}
