package ocicli

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// A detached exec whose record cannot be saved (here: a delete removed the
// container while the exec started) fails, and leaves neither its proxy
// nor its process in the guest nor a pid file.
func TestExecFailsWhenItsRecordCannotBeSaved(t *testing.T) {
	r := fakeRuntime(t)
	saveContainer(t, r, "c1", pod.Running)
	agent := &fakeAgent{exec: func(*agentproto.ExecProcessRequest) error {
		return r.Store.Remove("c1")
	}}
	serveMonitor(t, r, "c1", agent)

	stdin, stdinW := pipe(t)
	// Closing stdin ends the fake proxy, should Exec leave it running.
	t.Cleanup(func() { stdinW.Close() })
	// The proxy holds the only other end of out: EOF means it is gone.
	out, outW := pipe(t)
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	_, err := r.Exec(context.Background(), ExecRequest{ID: "c1", Process: specs.Process{Args: []string{"true"}},
		Detach: true, PidFile: pidFile, Stdio: [3]*os.File{stdin, outW, outW}})
	outW.Close()
	if !errors.Is(err, pod.ErrNotFound) {
		t.Fatalf("Exec with its container gone: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file written for a failed exec: %v", err)
	}
	sigs := agent.signals()
	if len(sigs) != 1 || sigs[0].ExecId == "" || sigs[0].Signal != uint32(unix.SIGKILL) {
		t.Errorf("signals to the guest: %v, want one SIGKILL to the exec", sigs)
	}
	if err := out.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the exec's proxy still holds its stdout: %v", err)
	}
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// Each layer of an operation names what it adds: "start c1" once, then the
// agent's own words, not "start c1: start container c1: ...".
func TestErrorsNameTheOperationOnce(t *testing.T) {
	r := fakeRuntime(t)
	saveContainer(t, r, "c1", pod.Created)
	const guestSays = "exec: \"nope\": executable file not found in $PATH"
	fail := status.Error(codes.FailedPrecondition, guestSays)
	serveMonitor(t, r, "c1", &fakeAgent{
		start: func(*agentproto.ContainerRequest) error { return fail },
		exec:  func(*agentproto.ExecProcessRequest) error { return fail },
	})
	ctx := context.Background()
	if err := r.Start(ctx, "c1"); err == nil || err.Error() != "start c1: "+fail.Error() {
		t.Errorf("Start error = %v, want %q", err, "start c1: "+fail.Error())
	}
	st, err := r.Store.Load("c1")
	if err != nil {
		t.Fatal(err)
	}
	st.Status = pod.Running
	if err := r.Store.Save(st); err != nil {
		t.Fatal(err)
	}
	_, err = r.Exec(ctx, ExecRequest{ID: "c1", Process: specs.Process{Args: []string{"nope"}}, Detach: true})
	if err == nil || err.Error() != "exec in c1: "+fail.Error() {
		t.Errorf("Exec error = %v, want %q", err, "exec in c1: "+fail.Error())
	}
}

// As runc, kill --all of a stopped container signals what is left of it
// and is no error; a plain kill of it is ErrNotRunning.
func TestKillAllOfAStoppedContainer(t *testing.T) {
	r := fakeRuntime(t)
	saveContainer(t, r, "c1", pod.Stopped)
	agent := &fakeAgent{}
	serveMonitor(t, r, "c1", agent)
	if err := r.Kill(context.Background(), "c1", unix.SIGKILL, false); !errors.Is(err, pod.ErrNotRunning) {
		t.Fatalf("kill of a stopped container: %v, want ErrNotRunning", err)
	}
	if err := r.Kill(context.Background(), "c1", unix.SIGKILL, true); err != nil {
		t.Fatalf("kill --all of a stopped container: %v", err)
	}
	if sigs := agent.signals(); len(sigs) != 1 || !sigs[0].All {
		t.Fatalf("signals %v, want one to all of c1", sigs)
	}
}
