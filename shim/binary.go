package shim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/internal/atomicfile"
	"github.com/hull-runtime/hull/pod"
)

// Args are the flags containerd passes a shim binary, and its action.
type Args struct {
	Namespace     string
	Address       string // containerd's gRPC address
	PublishBinary string
	ID            string
	Bundle        string
	Debug         bool
	// ConfigPath is passed by start to the daemon it spawns.
	ConfigPath string
	Action     string
}

// Env is what a shim reads of its environment, passed in by main.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// TTRPCAddress is containerd's ttrpc address ($TTRPC_ADDRESS).
	TTRPCAddress string
	// ConfigEnv is $HULL_CONFIG; ShimRoot $HULL_SHIM_ROOT.
	ConfigEnv string
	ShimRoot  string
	Version   string
}

// serveAction is the hidden action of the daemon that start spawns.
const serveAction = "serve"

// ParseArgs reads a shim's command line.
func ParseArgs(argv []string, stderr io.Writer) (Args, bool, error) {
	var a Args
	fs := flag.NewFlagSet(Frontend, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&a.Namespace, "namespace", "", "namespace of the task")
	fs.StringVar(&a.Address, "address", "", "containerd's gRPC address")
	fs.StringVar(&a.PublishBinary, "publish-binary", "", "containerd binary (unused: events go over ttrpc)")
	fs.StringVar(&a.ID, "id", "", "task ID")
	fs.StringVar(&a.Bundle, "bundle", "", "bundle path (default: the working directory)")
	fs.BoolVar(&a.Debug, "debug", false, "debug logs")
	fs.StringVar(&a.ConfigPath, "config", "", "hull configuration file")
	version := fs.Bool("v", false, "print the version")
	info := fs.Bool("info", false, "print the runtime's information (containerd 2.x asks)")
	if err := fs.Parse(argv); err != nil {
		return a, false, err
	}
	a.Action = fs.Arg(0)
	if *info {
		a.Action = infoAction
	}
	return a, *version, nil
}

// infoAction is `-info`, which containerd 2.x runs for its introspection.
const infoAction = "-info"

// featuresTypeURL is how containerd names the OCI features document.
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// runtimeInfo prints the runtime's name, version and OCI features as
// containerd's RuntimeInfo message.
func runtimeInfo(env Env) error {
	f, err := json.Marshal(pod.Features())
	if err != nil {
		return err
	}
	b, err := proto.Marshal(&apitypes.RuntimeInfo{Name: "io.containerd.hull.v2",
		Version:  &apitypes.RuntimeVersion{Version: env.Version},
		Features: &anypb.Any{TypeUrl: featuresTypeURL, Value: f}})
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(b)
	return err
}

// Main runs a shim command and returns its exit code.
func Main(argv []string, env Env) int {
	a, version, err := ParseArgs(argv, env.Stderr)
	if err != nil {
		return 2
	}
	if version {
		fmt.Fprintf(env.Stdout, "%s:\n  Version: %s\n  Runtime: io.containerd.hull.v2\n", Frontend, env.Version)
		return 0
	}
	if a.Bundle == "" {
		a.Bundle, _ = os.Getwd()
	}
	layout := Layout{Root: pod.ShimRoot(env.ShimRoot)}
	switch a.Action {
	case "start":
		err = start(a, env, layout)
	case "delete":
		err = deleteAction(a, env, layout)
	case serveAction:
		err = serve(a, env, layout)
	case infoAction:
		err = runtimeInfo(env)
	default:
		err = fmt.Errorf("unknown action %q: want start or delete", a.Action)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", Frontend, err)
		return 1
	}
	return 0
}

// podOf reads a task's bundle to find its pod: a CRI app container's is its
// sandbox's, any other container is a pod of its own.
func podOf(a Args) (string, bool, error) {
	spec, _, err := pod.ReadSpec(filepath.Join(a.Bundle, "config.json"))
	if err != nil {
		return "", false, err
	}
	sid, owner := pod.SandboxOf(a.ID, spec.Annotations)
	return sid, owner, nil
}

// start prints the address of the task's pod shim: an app container's is
// its sandbox's, already running; a sandbox's is a new shim, spawned here,
// listening before the address is printed.
func start(a Args, env Env, layout Layout) error {
	opts, err := io.ReadAll(env.Stdin)
	if err != nil {
		return fmt.Errorf("start %s: read options: %w", a.ID, err)
	}
	if len(opts) > 0 {
		var any anypb.Any
		if err := proto.Unmarshal(opts, &any); err == nil {
			a.ConfigPath = configPathOption(&any)
		}
	}
	sid, owner, err := podOf(a)
	if err != nil {
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	sock := layout.Socket(a.Address, a.Namespace, sid)
	if !owner {
		if !listening(sock) {
			return fmt.Errorf("start %s: pod %s has no shim", a.ID, sid)
		}
		return printAddress(a, env, sock)
	}
	if listening(sock) {
		return fmt.Errorf("start %s: pod %s already has a shim", a.ID, sid)
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	// The socket stays for the daemon, which serves on its copy.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	defer l.Close()
	lf, err := l.(*net.UnixListener).File()
	if err != nil {
		_ = os.Remove(sock)
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		_ = os.Remove(sock)
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	args := []string{"-namespace", a.Namespace, "-address", a.Address, "-id", sid, "-bundle", a.Bundle}
	if a.Debug {
		args = append(args, "-debug")
	}
	if a.ConfigPath != "" {
		args = append(args, "-config", a.ConfigPath)
	}
	cmd := exec.Command(self, append(args, serveAction)...)
	cmd.Dir = a.Bundle
	cmd.ExtraFiles = []*os.File{lf}
	// Its stderr (a Go panic, a SIGQUIT dump) goes to containerd's log.
	if logf, err := openLogFifo(a.Bundle); err == nil {
		defer logf.Close()
		cmd.Stderr = logf
	}
	// Its own session: it outlives this command and containerd restarts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		_ = os.Remove(sock)
		return fmt.Errorf("start %s: spawn shim: %w", a.ID, err)
	}
	_ = cmd.Process.Release()
	return printAddress(a, env, sock)
}

// printAddress tells containerd where the task's shim serves, on stdout and
// in the bundle's "address" file, which containerd reads to reconnect to
// its shims after a restart.
func printAddress(a Args, env Env, sock string) error {
	addr := "unix://" + sock
	if err := atomicfile.Write(filepath.Join(a.Bundle, "address"), []byte(addr), 0o600); err != nil {
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	_, err := fmt.Fprint(env.Stdout, addr)
	return err
}

func listening(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// deleteAction cleans up after a shim that containerd can no longer reach:
// for a pod's sandbox, its whole pod (the shim itself if it lingers, QEMU,
// share, network namespace, cgroup, state); for an app container, its rootfs
// mount and record. It prints the exit containerd records for the task.
func deleteAction(a Args, env Env, layout Layout) error {
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	sid, owner := a.ID, true
	if s, o, err := podOf(a); err == nil {
		sid, owner = s, o
	}
	dir := layout.PodDir(a.Namespace, sid)
	var err error
	if owner {
		err = cleanupPod(dir, log)
		_ = os.Remove(layout.Socket(a.Address, a.Namespace, sid))
	} else {
		err = errors.Join(unmountRootfs(filepath.Join(a.Bundle, "rootfs")), pod.RemoveRecord(pod.RecordDir(dir), a.ID))
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", a.ID, err)
	}
	b, err := proto.Marshal(&taskapi.DeleteResponse{ExitedAt: timestamppb.Now(), ExitStatus: 128 + uint32(syscall.SIGKILL)})
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(b)
	return err
}

// drainWait bounds how long a stopping shim waits for containerd to hang up
// once it has its Shutdown reply.
const drainWait = 5 * time.Second

// serve is the pod shim itself: the task service on the socket start made
// (fd 3), until Shutdown or a signal.
func serve(a Args, env Env, layout Layout) error {
	syscall.Umask(0o077)
	log := openLog(a.Bundle, a.Debug)
	l, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		return fmt.Errorf("serve %s: %w", a.ID, err)
	}
	sock := layout.Socket(a.Address, a.Namespace, a.ID)
	defer os.Remove(sock)
	ttrpcAddr := env.TTRPCAddress
	if ttrpcAddr == "" {
		ttrpcAddr = strings.TrimPrefix(a.Address, "unix://") + ".ttrpc"
	}
	pub := newPublisher(ttrpcAddr, a.Namespace, log)
	exit := make(chan struct{})
	svc := NewService(Options{Namespace: a.Namespace, ID: a.ID, Layout: layout, ConfigPath: a.ConfigPath,
		ConfigEnv: env.ConfigEnv, Publisher: pub, Log: log, Exit: func() { close(exit) }})
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("serve %s: %w", a.ID, err)
	}
	taskapi.RegisterTaskService(srv, svc)
	clients := agentproto.NewDrainingListener(l)
	go func() { _ = srv.Serve(context.Background(), clients) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGPIPE)
	log.Debug("shim serving", "pod", a.ID, "socket", sock)
	select {
	case <-exit:
	case s := <-sigs:
		log.Info("shim stopping", "pod", a.ID, "signal", s.String())
		svc.Stop()
	}
	// containerd hangs up once it has the Shutdown reply.
	ctx, cancel := context.WithTimeout(context.Background(), drainWait)
	_ = clients.Drain(ctx)
	cancel()
	srv.Close()
	pub.Close()
	return nil
}

// openLog writes the shim's log to the bundle's "log" FIFO, which containerd
// reads into its own log; without a reader it is dropped.
func openLog(bundle string, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	f, err := openLogFifo(bundle)
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: level}))
}

func openLogFifo(bundle string) (*os.File, error) {
	return os.OpenFile(filepath.Join(bundle, "log"), os.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}
