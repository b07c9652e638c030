package ocicli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/internal/mountinfo"
	"github.com/hull-runtime/hull/pod"
)

// ProxyOptions start the host stand-in of one container process.
type ProxyOptions struct {
	Store     *Store
	SandboxID string
	ID        string
	// ExecID is empty for the container's init process.
	ExecID   string
	Terminal bool
	// OwnNamespaces says the proxy was started in a mount namespace of its
	// own (see spawnProxy), holding a copy of the host's mounts.
	OwnNamespaces bool
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
	if o.OwnNamespaces {
		if err := releaseHostMounts(); err != nil {
			o.Log.Warn("proxy: release host mounts", "container", o.ID, "err", err)
		}
	}
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
	stdio := pod.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if o.Terminal {
		stdio.Stderr = nil
	}
	status, err := pod.Relay(ctx, agent, o.ID, o.ExecID, stdio)
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

// releaseHostMounts drops the copy of the host's mounts (all but the root)
// that a proxy's own mount namespace started with. Host mounts are private
// here: unmounting one on the host does not reach the copy, which would
// keep it alive (another container's rootfs, a volume) as long as the
// proxy runs. The proxy needs no path after dialing its monitor. The
// copies are made private first, so that unmounting them never propagates
// back to the host.
func releaseHostMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return err
	}
	var points []string
	for _, m := range mounts {
		if m.Point != "/" {
			points = append(points, m.Point)
		}
	}
	// Parents first: detaching one takes its children along.
	sort.Slice(points, func(i, j int) bool { return len(points[i]) < len(points[j]) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach %s: %w", p, err)
		}
	}
	return nil
}
