package ocicli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/atomicfile"
	"github.com/hull-runtime/hull/pod"
)

// CreateRequest is `hull create`.
type CreateRequest struct {
	ID            string
	Bundle        string
	PidFile       string
	ConsoleSocket string
	// Stdio are handed to the container's proxy (create's own by default).
	Stdio [3]*os.File
}

// Create prepares a container: its sandbox (booted now for a sandbox's first
// container), its rootfs in the share, its process created and waiting in
// the guest, and its proxy holding the streams. On error nothing is left.
func (r *Runtime) Create(ctx context.Context, req CreateRequest) (err error) {
	if err := ValidateID(req.ID); err != nil {
		return err
	}
	bundle, err := filepath.Abs(req.Bundle)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", req.Bundle, err)
	}
	spec, config, err := pod.ReadSpec(filepath.Join(bundle, "config.json"))
	if err != nil {
		return err
	}
	if spec.Process.Terminal && req.ConsoleSocket == "" {
		return errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !spec.Process.Terminal && req.ConsoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	cgroups, err := pod.CLICgroupDriver(r.SystemdCgroup)
	if err != nil {
		return err
	}
	place, err := r.Place(req.ID, spec)
	if err != nil {
		return fmt.Errorf("create container %s: %w", req.ID, err)
	}
	sid, owner := place.Sandbox, place.Owner
	if spec.Linux != nil {
		spec.Linux.Namespaces = place.NS.Apply(spec.Linux.Namespaces)
	}
	if err := r.Store.Reserve(req.ID); err != nil {
		return err
	}
	st := &ContainerState{ID: req.ID, Bundle: bundle, Rootfs: pod.InBundle(bundle, spec.Root.Path), SandboxID: sid,
		Status: pod.Creating, Created: time.Now().UTC(), Owner: currentUser(), Annotations: spec.Annotations,
		CgroupsPath: cgroupsPath(spec), CgroupDriver: cgroups.Driver}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			_ = r.Store.Remove(req.ID)
			err = fmt.Errorf("create container %s: %w", req.ID, err)
		}
	}()
	if err := r.Store.Save(st); err != nil {
		return err
	}
	if err := r.Store.SaveSpec(req.ID, config); err != nil {
		return err
	}
	cg, err := pod.NewHostCgroup(st.CgroupDriver, st.CgroupsPath, req.ID)
	if err != nil {
		return err
	}
	var limits *specs.LinuxResources
	if owner && spec.Linux != nil {
		limits = pod.SandboxResources(spec)
	}
	_, vmMem := pod.SizeVM(r.Config.Hypervisor, spec)
	if err := cg.Create(limits, vmMem); err != nil {
		return err
	}
	// Last to run: the cgroup empties as the processes below are killed
	// (with systemd, the scope starts with the proxy, its first process).
	cleanups = append([]func(){func() { _ = cg.Remove() }}, cleanups...)
	nsPath, newNS, err := r.netnsOf(spec, place)
	if err != nil {
		return err
	}
	st.NetNS = nsPath
	if newNS {
		if err := pod.CreateNetNS(nsPath); err != nil {
			return err
		}
		cleanups = append(cleanups, func() { _ = pod.RemoveNetNS(nsPath) })
	}

	stdio := req.Stdio
	for i, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if stdio[i] == nil {
			stdio[i] = f
		}
	}
	if spec.Process.Terminal {
		slave, err := sendPty(req.ConsoleSocket)
		if err != nil {
			return err
		}
		defer slave.Close()
		stdio = [3]*os.File{slave, slave, slave}
	}
	// The proxy starts first, in the container's network namespace: its PID
	// is the container's for the hooks, and Docker's prestart hook enters
	// that PID's namespace to plug the veth in before the VM takes it over.
	proxy, err := r.spawnProxy(ProxySpec{SandboxID: sid, ID: req.ID, Terminal: spec.Process.Terminal, Stdio: stdio, NetNS: nsPath, Cgroup: cg})
	if err != nil {
		return err
	}
	st.Proxy = proxy.Ref
	cleanups = append(cleanups, proxy.Kill)

	st.Status = pod.Created
	state := OCIState(st)
	if err := RunHooks(ctx, "prestart", spec.Hooks, state); err != nil {
		return err
	}
	if err := RunHooks(ctx, "createRuntime", spec.Hooks, state); err != nil {
		return err
	}
	if owner {
		// Registered first: a monitor that failed still leaves its traces.
		cleanups = append(cleanups, func() { _ = r.destroySandbox(context.Background(), sid) })
		if err := r.spawnMonitor(ctx, sid, spec, nsPath, st); err != nil {
			return err
		}
	}
	g, closeGuest, err := r.guest(sid)
	if err != nil {
		return err
	}
	defer closeGuest()
	if err := g.CreateContainer(ctx, req.ID, bundle, spec, true); err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = g.RemoveContainer(context.Background(), req.ID, true) })
	if err := proxy.Go(); err != nil {
		return err
	}
	if err := r.Store.Save(st); err != nil {
		return err
	}
	// Last, as runc does: whoever polls for the PID file may start the
	// container at once, so the state must already say created.
	if req.PidFile != "" {
		if err := writePidFile(req.PidFile, st.Proxy.PID); err != nil {
			return err
		}
	}
	return nil
}

func cgroupsPath(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// currentUser names the user running hull, as `list` shows it.
func currentUser() string {
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		return "#" + strconv.Itoa(os.Getuid())
	}
	return u.Username
}

// writePidFile writes the PID atomically, as runc does: callers poll for it.
func writePidFile(path string, pid int) error {
	if err := atomicfile.Write(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// sendPty makes a pty, sends its master to the caller's console socket (as
// runc does) and returns the slave, in raw mode: the guest's terminal does
// the line discipline.
func sendPty(socket string) (*os.File, error) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		return nil, fmt.Errorf("allocate pty: %w", err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open pty %s: %w", slavePath, err)
	}
	if err := makeRaw(slave); err != nil {
		slave.Close()
		return nil, fmt.Errorf("pty %s: %w", slavePath, err)
	}
	if err := sendFd(socket, slavePath, master); err != nil {
		slave.Close()
		return nil, err
	}
	return slave, nil
}

// sendFd passes f over the unix socket at path with SCM_RIGHTS.
func sendFd(path, name string, f console.File) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("connect console socket %s: %w", path, err)
	}
	oob := unix.UnixRights(int(f.Fd()))
	if err := unix.Sendmsg(fd, []byte(name), oob, nil, 0); err != nil {
		return fmt.Errorf("send pty to %s: %w", path, err)
	}
	return nil
}

// makeRaw puts a terminal fully in raw mode, output processing included: the
// bytes are already the guest terminal's, and must pass through unchanged.
func makeRaw(f *os.File) error {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}
