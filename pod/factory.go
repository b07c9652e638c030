package pod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/hypervisor"
	"github.com/hull-runtime/hull/internal/atomicfile"
)

// ErrTemplateOff means the configuration does not use VM templates.
var ErrTemplateOff = errors.New("factory.template is false")

// InitTemplate boots a VM template of the configuration's default shape,
// saves it in the factory directory and publishes it, replacing the one
// there. The template VM is gone when it returns; on error nothing it made
// is left but the factory directory.
func InitTemplate(ctx context.Context, cfg Config, log *slog.Logger) (_ *Template, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Factory.Template {
		return nil, fmt.Errorf("init template: %w in %s", ErrTemplateOff, cfgSource(cfg))
	}
	dir := cfg.Factory.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	if err := onTmpfs(dir); err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	work := filepath.Join(dir, templatePrefix+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(work)
		}
	}()
	t, err := bootTemplate(ctx, cfg, work, log)
	if err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("init template: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, templateRecord), b, 0o600); err != nil {
		return nil, fmt.Errorf("init template: publish: %w", err)
	}
	// Clones that run keep their mapping of an older template's RAM. A
	// newer template is another init's, still at work or published since.
	removeTemplates(dir, func(name string) bool { return templateTime(name) < templateTime(t.Dir) }, log)
	return t, nil
}

// bootTemplate boots the template VM in work, saves it there and ends it.
func bootTemplate(ctx context.Context, cfg Config, work string, log *slog.Logger) (*Template, error) {
	started := time.Now()
	t := &Template{Dir: filepath.Base(work)}
	last := started
	step := func(name string) {
		now := time.Now()
		t.Steps = append(t.Steps, Step{name, now.Sub(last)})
		last = now
	}
	h := cfg.Hypervisor
	accel, err := hypervisor.ResolveAccel(h.Accel, h.KVMDevice, h.KVMProbeLimit.Duration)
	if err != nil {
		return nil, err
	}
	share := filepath.Join(work, templateShare)
	if err := os.Mkdir(share, 0o500); err != nil {
		return nil, err
	}
	nics, endNICs, err := templateNICs(work, cfg.Factory.NICs)
	if err != nil {
		return nil, err
	}
	// Its taps (and their namespace) go once QEMU has.
	defer endNICs()
	hc := vmConfig(vmParams{ID: "template", Dir: work, Config: cfg, Accel: accel, NICs: nics, ShareExport: share, Template: true, Log: log})
	hc.RAM = &hypervisor.RAMFile{Path: filepath.Join(work, templateMemory), Shared: true}
	if t.Shape, err = shapeOf(hc, accel); err != nil {
		return nil, err
	}
	t.Hash = t.Shape.Hash()
	to := cfg.Timeouts
	q := hypervisor.New(hc, hypervisor.WithLogger(log),
		hypervisor.WithTimeouts(hypervisor.Timeouts{QMP: to.QMP.Duration, Powerdown: to.Powerdown.Duration, Quit: to.Quit.Duration}))
	if err := q.Start(ctx); err != nil {
		return nil, err
	}
	// The template VM never outlives init; a paused one quits at once.
	defer func() { _ = q.Stop(context.Background()) }()
	closeNICs(nics)
	step("qemu")
	bootCtx, cancel := context.WithTimeout(ctx, to.Boot.Duration)
	defer cancel()
	conn, err := agentproto.DialUnix(bootCtx, hc.Agent.SocketPath)
	if err != nil {
		return nil, err
	}
	agent := agentproto.NewClient(conn)
	defer agent.Close()
	if err := q.WaitAgentPort(bootCtx); err != nil {
		return nil, withConsole(err, hc.ConsoleLog)
	}
	if _, err := agent.Health(bootCtx, &agentproto.HealthRequest{}); err != nil {
		return nil, withConsole(fmt.Errorf("agent health: %w", err), hc.ConsoleLog)
	}
	step("agent")
	// Hang up and let the guest drop the connection and open its port
	// again: a clone then starts with its agent waiting for a host, and
	// never mistakes a clone's requests for the rest of this connection's.
	// After a hangup the guest only closes the port and reopens it: any
	// change QEMU reports from then on is that (it may take a second).
	changes := q.AgentPortChanges()
	_ = agent.Close()
	if err := q.WaitAgentPortChange(bootCtx, changes); err != nil {
		return nil, err
	}
	if err := q.WaitAgentPort(bootCtx); err != nil {
		return nil, err
	}
	step("hang up")
	statePath := filepath.Join(work, templateState)
	if err := q.SaveState(bootCtx, statePath); err != nil {
		return nil, err
	}
	step("save")
	if err := q.Stop(ctx); err != nil {
		return nil, err
	}
	step("qemu stop")
	for _, f := range []string{hc.QMPSocket, hc.Agent.SocketPath, hc.ConsoleLog, hc.ConsoleLog + ".stderr"} {
		_ = os.Remove(f)
	}
	for _, f := range []string{hc.RAM.Path, statePath} {
		if err := os.Chmod(f, 0o400); err != nil {
			return nil, err
		}
	}
	mem, err := os.Stat(hc.RAM.Path)
	if err != nil {
		return nil, err
	}
	t.MemoryBytes = mem.Size()
	if t.StateBytes, t.StateSHA256, err = hashFile(statePath); err != nil {
		return nil, err
	}
	t.Created = time.Now().UTC()
	t.Took = Duration{time.Since(started)}
	return t, nil
}

// templateNICs are the template's n NICs: taps in a network namespace of
// their own, pinned in work, that nothing else is in. The guest sees them
// with the template's MACs (templateMAC); a clone's NICs are the sandbox's
// taps, and its agent gives them the sandbox's MACs. A tap, rather than a
// backend that needs none, because QEMU saves whether the device's backend
// has vnet headers and a clone's taps have them: the guest then negotiates
// the offloads it has after a cold boot. end closes the taps and removes
// the namespace.
func templateNICs(work string, n int) (nics []hypervisor.NIC, end func(), err error) {
	if n == 0 {
		return nil, func() {}, nil
	}
	ns := filepath.Join(work, templateNetNS)
	if err := CreateNetNS(ns); err != nil {
		return nil, nil, fmt.Errorf("template nics: %w", err)
	}
	end = func() {
		closeNICs(nics)
		_ = RemoveNetNS(ns)
	}
	err = InNetNS(ns, func() error {
		for i := range n {
			tap, err := createTap("tap"+strconv.Itoa(i)+"_hull", 0)
			if err != nil {
				return err
			}
			nics = append(nics, hypervisor.NIC{Tap: tap, MAC: templateMAC(i)})
		}
		return nil
	})
	if err != nil {
		end()
		return nil, nil, fmt.Errorf("template nics: %w", err)
	}
	return nics, end, nil
}

// closeNICs closes hull's copies of the taps: QEMU has its own.
func closeNICs(nics []hypervisor.NIC) {
	for i := range nics {
		if nics[i].Tap != nil {
			nics[i].Tap.Close()
			nics[i].Tap = nil
		}
	}
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// withConsole appends the end of the guest console to err.
func withConsole(err error, console string) error {
	b, rerr := os.ReadFile(console)
	if rerr != nil || len(b) == 0 {
		return err
	}
	if len(b) > 1024 {
		b = b[len(b)-1024:]
	}
	return fmt.Errorf("%w; guest console ends with: %s", err, strings.TrimSpace(string(b)))
}

// removeTemplates removes the template directories in dir whose names
// match.
func removeTemplates(dir string, match func(name string) bool, log *slog.Logger) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), templatePrefix) && match(e.Name()) {
			// An init killed while its template VM ran leaves its NICs'
			// namespace pinned there.
			if err := RemoveNetNS(filepath.Join(dir, e.Name(), templateNetNS)); err != nil {
				log.Warn("remove template", "dir", e.Name(), "err", err)
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				log.Warn("remove template", "dir", e.Name(), "err", err)
			}
		}
	}
}

// templateTime is when the template directory name was made, in
// nanoseconds since the epoch (0 for a name that does not say).
func templateTime(name string) int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(name, templatePrefix), 10, 64)
	return n
}

// DestroyTemplate removes the template and the factory directory, and
// unmounts the tmpfs init mounted there. Running clones keep their RAM:
// they map it, and an unlinked file lives on until they exit; so does a
// tmpfs unmounted from under them. A factory directory that does not exist
// is no error. Run it when no init runs: a template that init publishes
// after it stays.
func DestroyTemplate(cfg Config) error {
	dir := cfg.Factory.Dir
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// No new clone from here on.
	if err := os.Remove(filepath.Join(dir, templateRecord)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroy template: %w", err)
	}
	removeTemplates(dir, func(string) bool { return true }, slog.New(slog.DiscardHandler))
	if _, err := os.Stat(filepath.Join(dir, templateMounted)); err == nil {
		if err := os.Remove(filepath.Join(dir, templateMounted)); err != nil {
			return fmt.Errorf("destroy template: %w", err)
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("destroy template: unmount %s: %w", dir, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroy template: %w", err)
	}
	return nil
}

// onTmpfs makes sure dir is on tmpfs (or ramfs), mounting a tmpfs there if
// it is not: a template's RAM file must be memory, never written to disk.
func onTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, templateMounted), nil, 0o600); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return err
	}
	return nil
}

// TemplateStatus is what `hull factory status` shows.
type TemplateStatus struct {
	Dir      string
	Template *Template
	// Err is why the template cannot be cloned, nil when it can.
	Err error
	// Matches says whether the configuration's default sandbox is of the
	// template's shape; Mismatch says how it differs when it is not.
	Matches  bool
	Mismatch string
	// MemoryInUse is what the template's RAM file takes in memory.
	MemoryInUse int64
}

// StatusOfTemplate describes the template in the configuration's factory
// directory; ErrNoTemplate when there is none.
func StatusOfTemplate(cfg Config) (TemplateStatus, error) {
	dir := cfg.Factory.Dir
	st := TemplateStatus{Dir: dir}
	t, err := ReadTemplate(dir)
	if err != nil {
		return st, err
	}
	st.Template = t
	st.Err = t.Check(dir)
	var fs unix.Stat_t
	if unix.Stat(t.MemoryPath(dir), &fs) == nil {
		st.MemoryInUse = fs.Blocks * 512
	}
	shape, err := DefaultTemplateShape(cfg)
	if err != nil {
		st.Mismatch = err.Error()
		return st, nil
	}
	st.Matches = shape.Hash() == t.Hash
	if !st.Matches {
		st.Mismatch = t.Shape.diff(shape)
	}
	return st, nil
}

// DefaultTemplateShape is the shape of the configuration's default sandbox
// (default vCPUs and memory, factory.nics NICs): the shape init makes a
// template of.
func DefaultTemplateShape(cfg Config) (TemplateShape, error) {
	h := cfg.Hypervisor
	accel, err := hypervisor.ResolveAccel(h.Accel, h.KVMDevice, h.KVMProbeLimit.Duration)
	if err != nil {
		return TemplateShape{}, err
	}
	hc := vmConfig(vmParams{ID: "template", Dir: cfg.Factory.Dir, Config: cfg, Accel: accel, Template: true,
		NICs: make([]hypervisor.NIC, cfg.Factory.NICs), Log: slog.New(slog.DiscardHandler)})
	return shapeOf(hc, accel)
}

func cfgSource(cfg Config) string {
	if cfg.Source == "" {
		return "the built-in configuration"
	}
	return cfg.Source
}
