package runtime

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/console"

	"github.com/hull-runtime/hull/agentproto"
)

// ProxyOptions start the host stand-in of one container process.
type ProxyOptions struct {
	Store     *Store
	SandboxID string
	ID        string
	// ExecID is empty for the container's init process.
	ExecID   string
	Terminal bool
	// Gate, when set, is read before relaying: create writes to it once
	// the process exists in the guest, or closes it to abort.
	Gate *os.File
	Log  *slog.Logger
}

// ExitSandboxLost is the proxy's status when the sandbox went away before
// the workload reported its own.
const ExitSandboxLost = 255

// RunProxy relays the process's streams between the fds the proxy inherited
// (or the terminal it was given) and the guest, forwards the signals it
// receives to the guest process, and returns the workload's exit status
// (128+N for signal N).
func RunProxy(ctx context.Context, o ProxyOptions) int {
	if o.Gate != nil {
		b := make([]byte, 1)
		n, _ := o.Gate.Read(b)
		o.Gate.Close()
		if n != 1 || b[0] != 'g' {
			return ExitSandboxLost
		}
	}
	agent, err := DialMonitor(o.Store, o.SandboxID)
	if err != nil {
		o.Log.Error("proxy", "container", o.ID, "err", err)
		return ExitSandboxLost
	}
	defer agent.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The monitor is gone, and with it the sandbox.
		<-agent.Done()
		cancel()
	}()

	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	var con console.Console
	if o.Terminal {
		if c, err := console.ConsoleFromFile(os.Stdin); err == nil {
			con = c
			resize(ctx, agent, o, con)
		}
	}
	go func() {
		for s := range sigs {
			sig := s.(syscall.Signal)
			switch sig {
			case syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGURG:
				continue
			case syscall.SIGWINCH:
				if con != nil {
					resize(ctx, agent, o, con)
				}
				continue
			}
			_, err := agent.SignalProcess(ctx, &agentproto.SignalProcessRequest{ContainerId: o.ID, ExecId: o.ExecID, Signal: uint32(sig)})
			o.Log.Debug("forward signal", "container", o.ID, "signal", sig, "err", err)
		}
	}()
	stdio := Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if o.Terminal {
		stdio.Stderr = nil
	}
	status, err := Relay(ctx, agent, o.ID, o.ExecID, stdio)
	if err != nil {
		o.Log.Error("proxy", "container", o.ID, "exec", o.ExecID, "err", err)
		return ExitSandboxLost
	}
	return status
}

func resize(ctx context.Context, agent agentproto.AgentService, o ProxyOptions, con console.Console) {
	ws, err := con.Size()
	if err != nil || ws.Height == 0 {
		return
	}
	_, _ = agent.ResizeTty(ctx, &agentproto.ResizeTtyRequest{ContainerId: o.ID, ExecId: o.ExecID, Rows: uint32(ws.Height), Cols: uint32(ws.Width)})
}
