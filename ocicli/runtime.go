package ocicli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// Runtime carries out the runc-compatible operations; cmd/hull is a thin CLI
// over it.
type Runtime struct {
	Store  *Store
	Config pod.Config
	// Self is the hull binary, re-executed for monitors and proxies.
	Self string
	// ChildArgs are the global flags children are started with (--root,
	// --config, --log, --debug).
	ChildArgs []string
	Log       *slog.Logger
	// ShimRoot is the containerd shim's state root, whose containers
	// list and state show too ("" for none).
	ShimRoot string
	// SystemdCgroup is --systemd-cgroup: create asks systemd for each
	// container's host cgroup (see pod.CLICgroupDriver).
	SystemdCgroup bool
}

// Hidden subcommands that run a sandbox monitor and a process proxy.
const (
	MonitorCommand = "__monitor"
	ProxyCommand   = "__proxy"
)

// guest returns the operations on a running sandbox; close it after use.
func (r *Runtime) guest(sid string) (*pod.Guest, func(), error) {
	c, err := DialMonitor(r.Store, sid)
	if err != nil {
		return nil, nil, err
	}
	g := &pod.Guest{Agent: c, Share: pod.ShareOf(r.Store.SandboxDir(sid)), Timeout: r.Config.Timeouts.Request.Duration}
	return g, func() { c.Close() }, nil
}

// refresh turns a status whose process is gone into stopped.
func refresh(st *ContainerState) {
	switch st.Status {
	case pod.Created, pod.Running, pod.Paused:
		if !st.Proxy.Alive() {
			st.Status = pod.Stopped
		}
	}
}

// OCIState is the state the OCI spec defines, as `state` prints it and as
// hooks receive it.
func OCIState(st *ContainerState) specs.State {
	pid := st.Proxy.PID
	if st.Status == pod.Stopped {
		pid = 0
	}
	return specs.State{Version: specs.Version, ID: st.ID, Status: specs.ContainerState(st.Status), Pid: pid,
		Bundle: st.Bundle, Annotations: st.Annotations}
}

// spawnMonitor starts the monitor of a new sandbox and waits until it serves.
func (r *Runtime) spawnMonitor(ctx context.Context, sid string, spec *specs.Spec, netns string, st *ContainerState) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	vcpus, mem := pod.SizeVM(r.Config.Hypervisor, spec)
	args := append(append([]string{}, r.ChildArgs...), MonitorCommand, "--id", sid,
		"--vcpus", fmt.Sprint(vcpus), "--memory", fmt.Sprint(mem), "--netns", netns,
		"--cgroup", st.CgroupsPath, "--cgroup-driver", string(st.CgroupDriver))
	cmd := exec.Command(r.Self, args...)
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("start monitor of %s: %w", sid, err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timeout := r.Config.Timeouts.Boot.Duration + r.Config.Timeouts.QMP.Duration + 10*time.Second
	select {
	case l := <-line:
		if l == "ok" {
			return nil
		}
		<-exited
		if l == "" {
			return fmt.Errorf("monitor of %s exited before the sandbox was ready", sid)
		}
		return errors.New(strings.TrimPrefix(l, "error: "))
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		return fmt.Errorf("sandbox %s not ready within %s", sid, timeout)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		return ctx.Err()
	}
}

// ProxySpec describes a proxy to spawn.
type ProxySpec struct {
	SandboxID, ID, ExecID string
	Terminal              bool
	// Stdio are the proxy's fds 0, 1, 2.
	Stdio [3]*os.File
	// NetNS is the network namespace the proxy lives in ("" for hull's).
	NetNS string
	// Cgroup is the host cgroup the proxy is put in (nil for none).
	Cgroup *pod.HostCgroup
}

// Proxy is a started proxy, waiting for Go before it relays.
type Proxy struct {
	Ref  pod.ProcessRef
	gate *os.File
}

// Go lets the proxy start relaying: its process now exists in the guest.
func (p *Proxy) Go() error {
	defer p.gate.Close()
	if _, err := p.gate.Write([]byte{'g'}); err != nil {
		return fmt.Errorf("release proxy %d: %w", p.Ref.PID, err)
	}
	return nil
}

// Kill ends a proxy that will not be needed.
func (p *Proxy) Kill() {
	p.gate.Close()
	p.Ref.Kill()
}

// spawnProxy starts a proxy; it keeps running after hull exits and is
// reparented to the caller's subreaper. It waits on fd 3 for Go. The proxy
// of a container's init process (whose PID callers take for the
// container's) holds PID, IPC, UTS, mount and cgroup namespaces of its own,
// so that /proc/PID/ns/* name this container and no other: another
// container joining them by path joins this one in the guest (see
// pod.PlanNamespaces).
func (r *Runtime) spawnProxy(p ProxySpec) (*Proxy, error) {
	args := append(append([]string{}, r.ChildArgs...), ProxyCommand, "--sandbox", p.SandboxID, "--id", p.ID)
	if p.ExecID != "" {
		args = append(args, "--exec", p.ExecID)
	} else {
		args = append(args, "--own-namespaces")
	}
	if p.Terminal {
		args = append(args, "--tty")
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer gateR.Close()
	cmd := exec.Command(r.Self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Stdio[0], p.Stdio[1], p.Stdio[2]
	cmd.ExtraFiles = []*os.File{gateR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if p.ExecID == "" {
		cmd.SysProcAttr.Cloneflags = pod.ProxyCloneFlags
	}
	if p.Terminal {
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	}
	start := cmd.Start
	if p.NetNS != "" {
		start = func() error { return pod.InNetNS(p.NetNS, cmd.Start) }
	}
	if err := start(); err != nil {
		gateW.Close()
		return nil, fmt.Errorf("start proxy of %s: %w", p.ID, err)
	}
	pid := cmd.Process.Pid
	ref, err := pod.RefOf(pid)
	if err != nil {
		// It already exited; its PID still names it until reaped.
		ref = pod.ProcessRef{PID: pid}
	}
	// Release sets cmd.Process.Pid to -1: use pid from here on.
	_ = cmd.Process.Release()
	proxy := &Proxy{Ref: ref, gate: gateW}
	// From here, not by the proxy itself: in its own cgroup namespace it
	// may not be allowed to move (cgroup v2 checks the namespace's root).
	if err := p.Cgroup.Add(pid); err != nil {
		proxy.Kill()
		return nil, fmt.Errorf("start proxy of %s: %w", p.ID, err)
	}
	return proxy, nil
}

// destroySandbox asks a sandbox's monitor to tear everything down and waits
// for it to be gone.
func (r *Runtime) destroySandbox(ctx context.Context, sid string) error {
	monitor, _ := readMonitorRef(r.Store, sid)
	c, err := DialMonitor(r.Store, sid)
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, r.Config.Timeouts.Powerdown.Duration+r.Config.Timeouts.Quit.Duration+10*time.Second)
		_, err = c.DestroySandbox(dctx, &agentproto.DestroySandboxRequest{})
		cancel()
		c.Close()
	} else if monitor.Alive() {
		// Still booting (or wedged): it stops and cleans up on SIGTERM.
		_ = syscall.Kill(monitor.PID, syscall.SIGTERM)
	}
	if !pod.WaitGone(monitor, r.Config.Timeouts.Quit.Duration+10*time.Second) {
		monitor.Kill()
		pod.WaitGone(monitor, 5*time.Second)
	}
	// QEMU and virtiofsd die with their monitor; one that did not (the
	// monitor was killed and the death signal was lost) is ended here, by
	// its recorded start.
	if info, ierr := ReadSandboxInfo(r.Store, sid); ierr == nil {
		procs := map[string]pod.ProcessRef{"QEMU": info.QEMU}
		if info.Virtiofsd != nil {
			procs["virtiofsd"] = *info.Virtiofsd
		}
		for name, p := range procs {
			if p.Alive() {
				r.Log.Warn(name+" outlived its monitor", "sandbox", sid, "pid", p.PID)
				p.Kill()
				pod.WaitGone(p, 5*time.Second)
			}
		}
	}
	if err := pod.RemoveNetNS(r.Store.NetNSPath(sid)); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", sid, err)
	}
	// A monitor that died uncleanly leaves its directory; clear it.
	if _, serr := os.Stat(r.Store.SandboxDir(sid)); serr == nil {
		share := pod.ShareOf(r.Store.SandboxDir(sid))
		if terr := share.Teardown(); terr != nil {
			return fmt.Errorf("destroy sandbox %s: %w", sid, terr)
		}
		if rerr := os.RemoveAll(r.Store.SandboxDir(sid)); rerr != nil {
			return fmt.Errorf("destroy sandbox %s: %w", sid, rerr)
		}
	}
	if rerr := os.Remove(r.Store.MonitorRefPath(sid)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return fmt.Errorf("destroy sandbox %s: %w", sid, rerr)
	}
	if err != nil && !errors.Is(err, ErrSandboxGone) {
		r.Log.Debug("destroy sandbox", "sandbox", sid, "err", err)
	}
	return nil
}
