package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// ExecRequest is `hull exec`.
type ExecRequest struct {
	ID      string
	Process specs.Process
	Detach  bool
	PidFile string
	// ConsoleSocket receives the pty master of a detached terminal exec.
	ConsoleSocket string
	Stdio         [3]*os.File
}

// ExecProcess builds the process of an inline `exec ARGS...` from the
// container's own process, as runc does.
func (r *Runtime) ExecProcess(id string, args, env []string, cwd string, tty bool, user *specs.User) (specs.Process, error) {
	st, err := r.load(id)
	if err != nil {
		return specs.Process{}, err
	}
	spec, err := r.Store.Spec(st.ID)
	if err != nil {
		return specs.Process{}, err
	}
	p := *spec.Process
	p.Args = args
	p.Env = append(append([]string{}, p.Env...), env...)
	if cwd != "" {
		p.Cwd = cwd
	}
	if user != nil {
		p.User = *user
	}
	p.Terminal = tty
	return p, nil
}

// Exec runs an extra process in a running container. Detached, a proxy holds
// its streams and its PID goes to the pid file; otherwise hull relays the
// streams itself and returns the exit status.
func (r *Runtime) Exec(ctx context.Context, req ExecRequest) (int, error) {
	if len(req.Process.Args) == 0 {
		return -1, fmt.Errorf("exec %s: process args must not be empty", req.ID)
	}
	if req.Process.Cwd == "" {
		req.Process.Cwd = "/"
	}
	st, err := r.load(req.ID)
	if err != nil {
		return -1, err
	}
	if _, err := st.Status.Next(OpExec); err != nil {
		return -1, fmt.Errorf("exec %s: %w", req.ID, err)
	}
	g, closeGuest, err := r.guest(st.SandboxID)
	if err != nil {
		return -1, err
	}
	defer closeGuest()
	eid, err := newExecID()
	if err != nil {
		return -1, err
	}
	b, err := json.Marshal(req.Process)
	if err != nil {
		return -1, err
	}
	rctx, cancel := g.ctx(ctx)
	_, err = g.Agent.ExecProcess(rctx, &agentproto.ExecProcessRequest{ContainerId: req.ID, ExecId: eid, Process: b, Stdin: true})
	cancel()
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	stdio := req.Stdio
	for i, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if stdio[i] == nil {
			stdio[i] = f
		}
	}
	if !req.Detach {
		return r.execForeground(ctx, g, req, eid, stdio)
	}
	if req.Process.Terminal {
		if req.ConsoleSocket == "" {
			return -1, fmt.Errorf("exec %s: a detached terminal needs --console-socket", req.ID)
		}
		slave, err := sendPty(req.ConsoleSocket)
		if err != nil {
			return -1, err
		}
		defer slave.Close()
		stdio = [3]*os.File{slave, slave, slave}
	}
	proxy, err := r.spawnProxy(ProxySpec{SandboxID: st.SandboxID, ID: req.ID, ExecID: eid, Terminal: req.Process.Terminal, Stdio: stdio, Cgroup: st.CgroupsPath})
	if err != nil {
		return -1, err
	}
	if err := proxy.Go(); err != nil {
		proxy.Kill()
		return -1, err
	}
	ref := proxy.Ref
	if req.PidFile != "" {
		if err := writePidFile(req.PidFile, ref.PID); err != nil {
			return -1, err
		}
	}
	if unlock, err := r.Store.Lock(req.ID); err == nil {
		if cur, err := r.Store.Load(req.ID); err == nil {
			if cur.Execs == nil {
				cur.Execs = map[string]ProcessRef{}
			}
			for k, e := range cur.Execs {
				if !e.Alive() {
					delete(cur.Execs, k)
				}
			}
			cur.Execs[eid] = ref
			_ = r.Store.Save(cur)
		}
		unlock()
	}
	return 0, nil
}

func (r *Runtime) execForeground(ctx context.Context, g *Guest, req ExecRequest, eid string, stdio [3]*os.File) (int, error) {
	relay := Stdio{Stdin: stdio[0], Stdout: stdio[1], Stderr: stdio[2]}
	if req.Process.Terminal {
		if con, err := console.ConsoleFromFile(stdio[0]); err == nil {
			if err := con.SetRaw(); err == nil {
				defer con.Reset()
			}
			if ws, err := con.Size(); err == nil && ws.Height > 0 {
				_, _ = g.Agent.ResizeTty(ctx, &agentproto.ResizeTtyRequest{ContainerId: req.ID, ExecId: eid, Rows: uint32(ws.Height), Cols: uint32(ws.Width)})
			}
		}
		relay.Stderr = nil
	}
	return Relay(ctx, g.Agent, req.ID, eid, relay)
}

func newExecID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "exec-" + hex.EncodeToString(b), nil
}
