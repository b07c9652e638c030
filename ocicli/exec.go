package ocicli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/pod"
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
	if req.Detach && req.Process.Terminal && req.ConsoleSocket == "" {
		return -1, fmt.Errorf("exec %s: a detached terminal needs --console-socket", req.ID)
	}
	st, err := r.load(req.ID)
	if err != nil {
		return -1, err
	}
	if _, err := st.Status.Next(pod.OpExec); err != nil {
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
	if err := g.ExecProcess(ctx, req.ID, eid, &req.Process, true); err != nil {
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
	if err := r.execDetached(st, req, eid, stdio); err != nil {
		r.killExec(context.WithoutCancel(ctx), g, req.ID, eid)
		return -1, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	return 0, nil
}

// execDetached hands an exec that runs in the guest to a proxy of its own,
// records the proxy in the container's state and writes its PID to the pid
// file. On error the proxy is gone; the guest process is the caller's.
func (r *Runtime) execDetached(st *ContainerState, req ExecRequest, eid string, stdio [3]*os.File) error {
	if req.Process.Terminal {
		slave, err := sendPty(req.ConsoleSocket)
		if err != nil {
			return err
		}
		defer slave.Close()
		stdio = [3]*os.File{slave, slave, slave}
	}
	cg, err := pod.NewHostCgroup(st.CgroupDriver, st.CgroupsPath, st.ID)
	if err != nil {
		return err
	}
	proxy, err := r.spawnProxy(ProxySpec{SandboxID: st.SandboxID, ID: req.ID, ExecID: eid, Terminal: req.Process.Terminal, Stdio: stdio, Cgroup: cg})
	if err != nil {
		return err
	}
	if err := proxy.Go(); err != nil {
		proxy.Kill()
		return err
	}
	if err := r.recordExec(req.ID, eid, proxy.Ref); err != nil {
		proxy.Kill()
		return err
	}
	// Last, as for create: whoever waits for the pid file may act on the
	// exec at once.
	if req.PidFile != "" {
		if err := writePidFile(req.PidFile, proxy.Ref.PID); err != nil {
			proxy.Kill()
			return err
		}
	}
	return nil
}

// recordExec adds an exec's proxy to the container's state (for ps, kill
// and delete), dropping the records of proxies that have exited.
func (r *Runtime) recordExec(id, eid string, proxy pod.ProcessRef) error {
	unlock, err := r.Store.Lock(id)
	if err != nil {
		return fmt.Errorf("record exec %s: %w", eid, err)
	}
	defer unlock()
	st, err := r.Store.Load(id)
	if err != nil {
		return fmt.Errorf("record exec %s: %w", eid, err)
	}
	if st.Execs == nil {
		st.Execs = map[string]pod.ProcessRef{}
	}
	for k, e := range st.Execs {
		if !e.Alive() {
			delete(st.Execs, k)
		}
	}
	st.Execs[eid] = proxy
	if err := r.Store.Save(st); err != nil {
		return fmt.Errorf("record exec %s: %w", eid, err)
	}
	return nil
}

// killExec ends an exec that started in the guest but could not be handed
// over, and forgets it there. It is cleanup on a failing path: what goes
// wrong is logged, not returned.
func (r *Runtime) killExec(ctx context.Context, g *pod.Guest, cid, eid string) {
	if err := g.KillExec(ctx, cid, eid); err != nil {
		r.Log.Debug("kill exec", "container", cid, "exec", eid, "err", err)
	}
}

func (r *Runtime) execForeground(ctx context.Context, g *pod.Guest, req ExecRequest, eid string, stdio [3]*os.File) (int, error) {
	relay := pod.Stdio{Stdin: stdio[0], Stdout: stdio[1], Stderr: stdio[2]}
	if req.Process.Terminal {
		if con, err := console.ConsoleFromFile(stdio[0]); err == nil {
			if err := con.SetRaw(); err == nil {
				defer con.Reset()
			}
			if ws, err := con.Size(); err == nil && ws.Height > 0 {
				_ = g.ResizeTty(ctx, req.ID, eid, ws.Height, ws.Width)
			}
		}
		relay.Stderr = nil
	}
	return pod.Relay(ctx, g.Agent, req.ID, eid, relay)
}

func newExecID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "exec-" + hex.EncodeToString(b), nil
}
