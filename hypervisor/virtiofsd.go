package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// VirtiofsdConfig describes the virtio-fs daemon of one VM: QEMU 7.2's C
// virtiofsd (Debian: /usr/lib/qemu/virtiofsd), which serves one host
// directory to the VM's vhost-user-fs device.
type VirtiofsdConfig struct {
	// Path is the virtiofsd binary.
	Path string
	// Source is the directory it serves.
	Source string
	// Socket is the vhost-user socket QEMU connects to (VirtioFSDevice's).
	Socket string
	// Log receives virtiofsd's stderr.
	Log string
	// Debug turns on virtiofsd's debug log.
	Debug bool
}

// killWait bounds the wait for a SIGKILLed virtiofsd to be gone.
const killWait = 5 * time.Second

// virtiofsdSocketFD is where virtiofsd finds its listening socket.
const virtiofsdSocketFD = 3

// Args renders virtiofsd's command line (without the binary).
//
// sandbox=namespace: virtiofsd enters new mount, PID and network
// namespaces, makes every mount in its copy a slave, and pivots into
// Source; what it can reach is Source alone. Its copy of Source stays a
// slave of the host's, so the per-container binds hull adds under the
// share after virtiofsd started arrive in it by propagation, and each
// keeps its read-only flag. Its seccomp filter is always on.
//
// cache=auto: the guest revalidates what it cached after a second, so files
// hull or the user change on the host show up (cache=always would hide
// them until the guest drops its cache). xattr: like 9p's
// security_model=none, extended attributes (file capabilities) pass
// through. no_posix_lock: POSIX locks stay in the guest, as over 9p (the
// daemon's remote locks break apt and others). announce_submounts: each
// host mount under Source (a container's rootfs, a volume) is its own
// file system in the guest, with its own st_dev, so inode numbers of two
// host file systems never collide (9p's multidevs=remap).
func (c VirtiofsdConfig) Args() []string {
	level := "warn"
	if c.Debug {
		level = "debug"
	}
	args := []string{fmt.Sprintf("--fd=%d", virtiofsdSocketFD)}
	for _, o := range []string{"source=" + fuseOptEscape(c.Source), "sandbox=namespace", "cache=auto",
		"xattr", "no_posix_lock", "announce_submounts", "log_level=" + level} {
		args = append(args, "-o", o)
	}
	return args
}

// fuseOptEscape escapes the characters fuse_opt splits -o values on.
func fuseOptEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// Validate reports the first setting virtiofsd could not start with.
func (c VirtiofsdConfig) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("virtiofsd path is empty")
	case c.Source == "":
		return errors.New("virtiofsd source directory is empty")
	case c.Socket == "":
		return errors.New("virtiofsd socket path is empty")
	case c.Log == "":
		return errors.New("virtiofsd log path is empty")
	}
	return nil
}

// Virtiofsd is one running virtiofsd process.
type Virtiofsd struct {
	cfg     VirtiofsdConfig
	log     *slog.Logger
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// NewVirtiofsd prepares a virtiofsd for cfg; nothing runs until Start.
func NewVirtiofsd(cfg VirtiofsdConfig, log *slog.Logger) *Virtiofsd {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Virtiofsd{cfg: cfg, log: log, done: make(chan struct{})}
}

// Start listens on the vhost-user socket and spawns virtiofsd with the
// listening socket as fd 3. QEMU may connect as soon as Start returns: the
// connection waits in the backlog until virtiofsd accepts it, and fails if
// virtiofsd dies first. On error nothing is left running.
func (v *Virtiofsd) Start() error {
	if err := v.cfg.Validate(); err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	_ = os.Remove(v.cfg.Socket) // stale from a crashed predecessor
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: v.cfg.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	// The socket outlives hull's listener: virtiofsd holds it.
	l.SetUnlinkOnClose(false)
	defer l.Close()
	if err := os.Chmod(v.cfg.Socket, 0o600); err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	sock, err := l.File()
	if err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	defer sock.Close()
	stderr, err := os.OpenFile(v.cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	defer stderr.Close()
	cmd := exec.Command(v.cfg.Path, v.cfg.Args()...)
	cmd.ExtraFiles = []*os.File{sock} // fd 3
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// It dies with its owner, as QEMU does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	v.log.Debug("spawn virtiofsd", "path", v.cfg.Path, "args", cmd.Args[1:])
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start virtiofsd: %w", err)
	}
	v.cmd = cmd
	go func() {
		v.waitErr = cmd.Wait()
		close(v.done)
	}()
	return nil
}

// Stop ends virtiofsd: SIGTERM, then SIGKILL once ctx ends. It returns nil
// when virtiofsd exited on SIGTERM (or before), and why it had to be killed
// otherwise. virtiofsd also exits by itself once QEMU hangs up.
func (v *Virtiofsd) Stop(ctx context.Context) error {
	if v.cmd == nil {
		return nil
	}
	select {
	case <-v.done:
		return nil
	default:
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
	}
	if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop virtiofsd: kill pid %d: %w", v.cmd.Process.Pid, err)
	}
	select {
	case <-v.done:
		return fmt.Errorf("stop virtiofsd: killed: %w", ctx.Err())
	case <-time.After(killWait):
		return fmt.Errorf("stop virtiofsd: pid %d still running %s after SIGKILL", v.cmd.Process.Pid, killWait)
	}
}

// Done is closed once virtiofsd has exited.
func (v *Virtiofsd) Done() <-chan struct{} { return v.done }

// ExitError is virtiofsd's wait status and the end of its log, once Done is
// closed.
func (v *Virtiofsd) ExitError() error {
	err := v.waitErr
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%w%s", err, logTail(v.cfg.Log))
}

// PID is virtiofsd's process ID, 0 before Start.
func (v *Virtiofsd) PID() int {
	if v.cmd == nil || v.cmd.Process == nil {
		return 0
	}
	return v.cmd.Process.Pid
}
