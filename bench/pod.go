package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hull-runtime/hull/pod"
	"github.com/hull-runtime/hull/tests/fixture"
)

// The private containerd of the pod case: Debian 12's containerd 1.6, as
// the CRI suites run by default (tests/integration/containerd.bash), on a
// CNI bridge of its own so that it can run beside those suites.
const (
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
	criNamespace  = "k8s.io"
	criBridge     = "hullbench0"
	criSubnet     = "10.88.98.0/24"
	pauseImage    = "docker.io/library/hull-pause:latest"
	busyboxImage  = "docker.io/library/hull-busybox:latest"
	// containerdStopWait is how long containerd has to exit on SIGTERM
	// before it gets SIGKILL.
	containerdStopWait = 10 * time.Second
)

// podPath is one way containerd runs a hull pod: a CRI runtime handler and
// the host processes a pod of it is expected to have.
type podPath struct {
	key, handler, label string
	kinds               []string
}

// podPaths are the two paths compared, in the order each repetition runs
// them: hull's own shim, then containerd's runc shim running the hull CLI.
var podPaths = []podPath{
	{"shim", "hull-v2", "hull-v2: containerd-shim-hull-v2", []string{"shim", "qemu"}},
	{"cli", "hull", "hull: runc shim + hull CLI", []string{"runc_shim", "monitor", "proxy", "qemu"}},
}

// podSteps are the crictl calls that make a pod ready, timed one by one
// ("pod_<path>_<step>"), then its removal, which the row leaves out.
var podSteps = []struct{ key, label string }{
	{"runp", "crictl runp"}, {"create", "crictl create"}, {"start", "crictl start"},
}

// podProcKinds are the host processes a pod can have, by what they run.
var podProcKinds = []struct{ key, label string }{
	{"shim", "containerd-shim-hull-v2"},
	{"runc_shim", "containerd-shim-runc-v2"},
	{"monitor", "hull __monitor"},
	{"proxy", "hull __proxy (pause and sleep containers)"},
	{"qemu", "QEMU"},
	{"virtiofsd", "virtiofsd (both processes)"},
	{"other", "other"},
}

// pods times a CRI pod with one `sleep` container to ready, and reads the
// PSS of its host processes once idle, through containerd's two hull
// handlers in turn: hull-v2 (containerd-shim-hull-v2, one process per pod)
// and hull (containerd's runc shim running the hull CLI, which spawns a
// monitor and a proxy per container).
func (b *bench) pods(ctx context.Context) error {
	h, err := b.startCRI(ctx, filepath.Join(b.tmp, "pod"))
	if err != nil {
		return err
	}
	defer h.close()

	// One pod each first, unmeasured: the first pod of a containerd pays
	// for its CNI set-up and cold caches.
	for _, p := range podPaths {
		sid, _, err := h.up(ctx, p.handler, "warm-"+p.key)
		if err != nil {
			return fmt.Errorf("%s: %w", p.handler, err)
		}
		if _, err := h.down(ctx, sid); err != nil {
			return fmt.Errorf("%s: %w", p.handler, err)
		}
	}
	for i := range b.n {
		if err := b.podPair(ctx, h, i); err != nil {
			return err
		}
		log.Printf("  rep %d: ready %.0f ms (shim) vs %.0f ms (cli), PSS %.1f vs %.1f MiB", i+1,
			b.s.vals["pod_ready_shim"][i], b.s.vals["pod_ready_cli"][i], b.s.vals["pod_pss_shim"][i], b.s.vals["pod_pss_cli"][i])
	}
	b.note("Pod: a private containerd 1.6 (Debian's, native snapshotter, CNI bridge %s) with hull's two CRI handlers, "+
		"hull-v2 (containerd-shim-hull-v2, options ConfigPath) and hull (containerd's runc shim, BinaryName the built hull); both run the same hull.toml "+
		"(tcg, %d MiB, hull's default shared_fs %s). Ready: wall time of `crictl runp` + `crictl create` + `crictl start` of one busybox `sleep 600` container "+
		"(crictl's own start-up and connection included, alike on both sides); one unmeasured pod through each handler first, then n repetitions "+
		"of a pod through each, one after the other, first the shim's then the CLI's, then the other way round.",
		criBridge, memGuestMiB, pod.DefaultConfig().SharedFS.Type)
	b.note("Pod PSS: read %s after the second pod's `crictl start`, both pods idle side by side; the sum over each pod's host processes, "+
		"those whose command line names the private directory and the pod's sandbox ID, and their descendants. "+
		"hull-v2: containerd-shim-hull-v2 (serve), QEMU, virtiofsd (both processes). "+
		"hull: the pod's containerd-shim-runc-v2, hull __monitor, hull __proxy of the pause and of the sleep container, QEMU, virtiofsd. "+
		"containerd itself is left out on both sides. PSS splits a page among all the processes that map it, here or elsewhere on the host: "+
		"the two pods' QEMUs share their binary and libraries with each other and with whatever other VMs run at that moment, "+
		"which is why both are read at once; the runc shim's binary is Debian's, shared with other containerds' shims.",
		idleSettle)
	return h.close()
}

// podPair is repetition i: a pod through each path, brought up one after
// the other and timed (the order alternates from one repetition to the
// next, so that neither always starts beside the other's idle VM), read
// together once both are idle (the other VMs on the host then share QEMU's
// and virtiofsd's pages with both alike), then removed.
func (b *bench) podPair(ctx context.Context, h *criHost, i int) error {
	order := slices.Clone(podPaths)
	if i%2 == 1 {
		slices.Reverse(order)
	}
	sids := map[string]string{}
	for _, p := range order {
		sid, steps, err := h.up(ctx, p.handler, fmt.Sprintf("%s%d", p.key, i))
		if err != nil {
			return fmt.Errorf("%s: %w", p.handler, err)
		}
		sids[p.key] = sid
		var ready time.Duration
		for i, st := range podSteps {
			b.s.Add("pod_"+p.key+"_"+st.key, ms(steps[i]))
			ready += steps[i]
		}
		b.s.Add("pod_ready_"+p.key, ms(ready))
	}
	time.Sleep(idleSettle)
	for _, p := range podPaths {
		if err := b.addPodPSS(h, p, sids[p.key]); err != nil {
			return fmt.Errorf("%s: %w", p.handler, err)
		}
	}
	for _, p := range order {
		took, err := h.down(ctx, sids[p.key])
		if err != nil {
			return fmt.Errorf("%s: %w", p.handler, err)
		}
		b.s.Add("pod_"+p.key+"_remove", ms(took))
	}
	return nil
}

// addPodPSS reads the PSS of pod sid of path p, by kind of process.
func (b *bench) addPodPSS(h *criHost, p podPath, sid string) error {
	pss, err := readPodPSS(h.dir, sid)
	if err != nil {
		return err
	}
	for _, k := range p.kinds {
		if _, ok := pss.byKind[k]; !ok {
			return fmt.Errorf("pod %s: no %s process found among %v", sid, k, pss.pids)
		}
	}
	var total float64
	for _, k := range podProcKinds {
		if v, ok := pss.byKind[k.key]; ok {
			b.s.Add("pod_pss_"+p.key+"_"+k.key, v)
			total += v
		}
	}
	b.s.Add("pod_pss_"+p.key, total)
	b.s.Add("pod_pss_"+p.key+"_qemu_ram", pss.qemuRAM)
	b.s.Add("pod_pss_"+p.key+"_qemu_tcg", pss.qemuTCG)
	return nil
}

// criHost is a private containerd with hull's two CRI handlers; its
// configuration, root, state, socket, CNI configuration and IPAM data, and
// both front ends' hull state are under dir.
type criHost struct {
	dir        string
	containerd *exec.Cmd
	exited     chan struct{}
	crictlBin  string
	// build is put first on containerd's PATH.
	build    string
	closed   bool
	closeErr error
}

// startCRI writes the configurations in dir, starts containerd and imports
// the pause and busybox images. On error it has undone what it did.
func (b *bench) startCRI(ctx context.Context, dir string) (*criHost, error) {
	crictl, err := exec.LookPath("crictl")
	if err != nil {
		return nil, fmt.Errorf("crictl missing (go install sigs.k8s.io/cri-tools/cmd/crictl): %w", err)
	}
	h := &criHost{dir: dir, crictlBin: crictl, build: b.build}
	for _, d := range []string{"cni", "logs", "hull-root", "shim-root"} {
		if err := os.MkdirAll(h.path(d), 0o700); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"cni/10-hullbench.conflist": h.cniConfig(),
		"containerd.toml":           h.containerdConfig(b.file("hull")),
		"crictl.yaml": fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%[1]s\ntimeout: 120\n",
			h.path("c.sock")),
	}
	for name, text := range files {
		if err := os.WriteFile(h.path(name), []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	if err := b.writeHullConfig(h.path("hull.toml"), memGuestMiB, pod.DefaultConfig().SharedFS.Type); err != nil {
		return nil, err
	}
	if err := h.startContainerd(ctx); err != nil {
		h.close()
		return nil, err
	}
	if err := h.importImages(ctx); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *criHost) path(name string) string { return filepath.Join(h.dir, name) }

func (h *criHost) cniConfig() string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "hullbench", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
`, criBridge, h.path("cni-ipam"), criSubnet)
}

// containerdConfig is containerd.bash's version-2 configuration with the
// two hull handlers (hull runs the hull binary at hullBin).
func (h *criHost) containerdConfig(hullBin string) string {
	const cri = `plugins."io.containerd.grpc.v1.cri"`
	return fmt.Sprintf(`version = 2
root = %[2]q
state = %[3]q
[grpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[%[1]s]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  [%[1]s.containerd]
    snapshotter = "native"
    default_runtime_name = "hull-v2"
    [%[1]s.containerd.runtimes.hull]
      runtime_type = "io.containerd.runc.v2"
      [%[1]s.containerd.runtimes.hull.options]
        BinaryName = %[7]q
        Root = %[8]q
    [%[1]s.containerd.runtimes.hull-v2]
      runtime_type = "io.containerd.hull.v2"
      [%[1]s.containerd.runtimes.hull-v2.options]
        ConfigPath = %[9]q
  [%[1]s.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[10]q
`, cri, h.path("root"), h.path("state"), h.path("c.sock"), h.path("opt"), pauseImage,
		hullBin, h.path("hull-root"), h.path("hull.toml"), h.path("cni"))
}

// startContainerd starts containerd with h.build first on its PATH (it
// finds containerd-shim-hull-v2 there) and waits for its CRI to answer.
// containerd passes its environment to the shims: HULL_CONFIG reaches the
// hull CLI through the runc shim, HULL_SHIM_ROOT moves
// containerd-shim-hull-v2's state into dir.
func (h *criHost) startContainerd(ctx context.Context) error {
	// A containerd that died left its socket.
	if err := os.Remove(h.path("c.sock")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	logf, err := os.OpenFile(h.path("containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(containerdBin, "--config", h.path("containerd.toml"))
	cmd.Env = append(os.Environ(), "PATH="+h.build+":"+os.Getenv("PATH"),
		"HULL_CONFIG="+h.path("hull.toml"), "HULL_SHIM_ROOT="+h.path("shim-root"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C reaches the bench alone, which then
	// removes the pods before it stops containerd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	h.containerd, h.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(h.exited) }()
	var err2 error
	for range 100 {
		if _, err2 = h.crictl(ctx, "info"); err2 == nil {
			return nil
		}
		select {
		case <-h.exited:
			return fmt.Errorf("containerd exited: %s", h.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("containerd's CRI: %w; containerd's log: %s", err2, h.logTail())
}

func (h *criHost) logTail() []byte {
	b, _ := os.ReadFile(h.path("containerd.log"))
	return tail(bytes.TrimSpace(b), 1024)
}

// importImages builds the pause and busybox images with the suites'
// mkimage.sh from a busybox rootfs and imports them for the CRI.
func (h *criHost) importImages(ctx context.Context) error {
	src, err := benchSourceDir()
	if err != nil {
		return err
	}
	mkimage := filepath.Join(filepath.Dir(src), "tests", "integration", "mkimage.sh")
	rootfs, err := fixture.Rootfs(h.path("img"))
	if err != nil {
		return err
	}
	for _, img := range []struct {
		name string
		cmd  []string
	}{
		{"hull-pause", []string{"sh", "-c", `trap "exit 0" TERM; while :; do sleep 1; done`}},
		{"hull-busybox", []string{"sh"}},
	} {
		archive := h.path(img.name + ".tar")
		args := append([]string{rootfs, img.name, archive}, img.cmd...)
		if out, err := exec.CommandContext(ctx, mkimage, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("mkimage %s: %w: %s", img.name, err, bytes.TrimSpace(out))
		}
		if out, err := exec.CommandContext(ctx, ctrBin, "-a", h.path("c.sock"), "-n", criNamespace, "images", "import", archive).CombinedOutput(); err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", img.name, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// crictl runs crictl against this containerd and returns its stdout.
func (h *criHost) crictl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.crictlBin, append([]string{"--config", h.path("crictl.yaml")}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, tail(bytes.TrimSpace(stderr.Bytes()), 512))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// up runs pod name through handler with one busybox `sleep 600` container,
// created and started; it returns the pod's sandbox ID and the time of each
// of podSteps.
func (h *criHost) up(ctx context.Context, handler, name string) (string, []time.Duration, error) {
	podConf, ctrConf := h.path(name+"-pod.json"), h.path(name+"-ctr.json")
	logDir := h.path(filepath.Join("logs", name))
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return "", nil, err
	}
	for path, v := range map[string]any{
		podConf: map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "bench", "uid": "uid-" + name},
			"log_directory": logDir,
			"linux":         map[string]any{},
		},
		ctrConf: map[string]any{
			"metadata": map[string]any{"name": "sleep"},
			"image":    map[string]any{"image": busyboxImage},
			"command":  []string{"sleep", "600"},
			"log_path": "sleep.log",
			"linux":    map[string]any{},
		},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", nil, err
		}
	}
	var steps []time.Duration
	lap := time.Now()
	split := func() {
		now := time.Now()
		steps = append(steps, now.Sub(lap))
		lap = now
	}
	sid, err := h.crictl(ctx, "runp", "--runtime", handler, podConf)
	if err != nil {
		return "", nil, err
	}
	split()
	cid, err := h.crictl(ctx, "create", sid, ctrConf, podConf)
	if err != nil {
		return "", nil, err
	}
	split()
	if _, err := h.crictl(ctx, "start", cid); err != nil {
		return "", nil, err
	}
	split()
	return sid, steps, nil
}

// down stops and removes pod sid and returns how long that took.
func (h *criHost) down(ctx context.Context, sid string) (time.Duration, error) {
	t0 := time.Now()
	if _, err := h.crictl(ctx, "stopp", sid); err != nil {
		return 0, err
	}
	if _, err := h.crictl(ctx, "rmp", sid); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// close removes every pod, stops containerd (SIGTERM, then SIGKILL), kills
// what a failure left running under dir, unmounts what is left mounted
// there, deletes the CNI bridge and removes dir. A containerd that died is
// started again first: only it can tear down its pods' network namespaces
// and CNI state. It runs once; later calls return the first one's error.
func (h *criHost) close() error {
	if h.closed {
		return h.closeErr
	}
	h.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if h.containerd != nil && isDone(h.exited) {
		log.Printf("containerd is gone: starting it again to remove its pods")
		if err := h.startContainerd(ctx); err != nil {
			errs = append(errs, fmt.Errorf("restart containerd: %w", err))
		}
	}
	if h.containerd != nil && !isDone(h.exited) {
		pods, err := h.crictl(ctx, "pods", "-q")
		if err != nil {
			errs = append(errs, err)
		}
		for _, sid := range strings.Fields(pods) {
			if _, err := h.crictl(ctx, "stopp", sid); err != nil {
				errs = append(errs, err)
			}
			if _, err := h.crictl(ctx, "rmp", "-f", sid); err != nil {
				errs = append(errs, err)
			}
		}
		_ = h.containerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(containerdStopWait):
			log.Printf("containerd still there %s after SIGTERM: SIGKILL", containerdStopWait)
			_ = h.containerd.Process.Kill()
			<-h.exited
		}
	}
	// Shims, monitors, proxies, QEMU and virtiofsd all name dir.
	for _, pid := range pidsNaming(h.dir) {
		log.Printf("killing process %d left under %s", pid, h.dir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if l := fixture.Leftovers(h.dir, 5*time.Second); len(l) > 0 {
		errs = append(errs, unmountUnder(h.dir))
	}
	if out, err := exec.Command("ip", "link", "del", criBridge).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
		errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", criBridge, err, bytes.TrimSpace(out)))
	}
	if l := fixture.Leftovers(h.dir, 5*time.Second); len(l) > 0 {
		errs = append(errs, fmt.Errorf("keeping %s, still in use: %s", h.dir, strings.Join(l, "; ")))
	} else if err := os.RemoveAll(h.dir); err != nil {
		errs = append(errs, err)
	}
	h.closeErr = errors.Join(errs...)
	if h.closeErr != nil {
		log.Printf("pod case clean-up: %v", h.closeErr)
	}
	return h.closeErr
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// pidsNaming lists the processes, other than this one, whose command line
// names s.
func pidsNaming(s string) []int {
	var out []int
	for pid, argv := range procCmdlines() {
		if pid != os.Getpid() && slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, s) }) {
			out = append(out, pid)
		}
	}
	return out
}

// procCmdlines reads the command line of every process.
func procCmdlines() map[int][]string {
	out := map[int][]string{}
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(p)
		if err != nil || len(raw) == 0 {
			continue
		}
		out[pid] = strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	}
	return out
}

// unmountUnder detaches every mount under dir, the deepest first.
func unmountUnder(dir string) error {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	slices.Sort(points)
	var errs []error
	for _, p := range slices.Backward(points) {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// podPSS is the PSS of one pod's host processes, in MiB.
type podPSS struct {
	// byKind sums the processes of each of podProcKinds present.
	byKind map[string]float64
	// qemuRAM and qemuTCG are QEMU's share of the guest RAM mapping and
	// of TCG's translation buffer.
	qemuRAM, qemuTCG float64
	pids             map[int]string
}

// readPodPSS finds the host processes of CRI pod sid whose command lines
// name dir: those that name sid too (its containerd shim; hull's monitor
// and proxies) and their descendants (QEMU, virtiofsd), and reads their
// PSS.
func readPodPSS(dir, sid string) (podPSS, error) {
	type proc struct {
		ppid int
		argv []string
	}
	procs := map[int]proc{}
	for pid, argv := range procCmdlines() {
		if !slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, dir) }) {
			continue
		}
		ppid, err := parentPID(pid)
		if err != nil {
			continue // gone
		}
		procs[pid] = proc{ppid, argv}
	}
	inPod := func(pid int) bool {
		for seen := 0; seen < len(procs); seen++ {
			p, ok := procs[pid]
			if !ok {
				return false
			}
			if slices.ContainsFunc(p.argv, func(a string) bool { return strings.Contains(a, sid) }) {
				return true
			}
			pid = p.ppid
		}
		return false
	}
	out := podPSS{byKind: map[string]float64{}, pids: map[int]string{}}
	for pid, p := range procs {
		if !inPod(pid) {
			continue
		}
		kind := procKind(p.argv)
		v, err := pssMiB(pid)
		if err != nil {
			return podPSS{}, fmt.Errorf("pod %s: %s: %w", sid, kind, err)
		}
		out.byKind[kind] += v
		out.pids[pid] = kind
		if kind == "qemu" {
			if out.qemuRAM, out.qemuTCG, err = qemuPSS(pid, memGuestMiB); err != nil {
				return podPSS{}, fmt.Errorf("pod %s: %w", sid, err)
			}
		}
	}
	return out, nil
}

// parentPID reads a process's parent from /proc/PID/stat.
func parentPID(pid int) (int, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(raw, ')'); i >= 0 {
		if f := strings.Fields(string(raw[i+1:])); len(f) >= 2 {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, raw)
}

// procKind names what a pod's host process runs, one of podProcKinds.
func procKind(argv []string) string {
	switch base := filepath.Base(argv[0]); {
	case base == "containerd-shim-hull-v2":
		return "shim"
	case base == "containerd-shim-runc-v2":
		return "runc_shim"
	case strings.HasPrefix(base, "qemu-system"):
		return "qemu"
	case base == "virtiofsd":
		return "virtiofsd"
	case slices.Contains(argv, "__monitor"):
		return "monitor"
	case slices.Contains(argv, "__proxy"):
		return "proxy"
	}
	return "other"
}

// podTable sets the two paths side by side: the time of each crictl step
// and the PSS of each kind of process.
func (b *bench) podTable() string {
	if b.s.Stat("pod_ready_shim").N == 0 {
		return ""
	}
	var t strings.Builder
	t.WriteString("| median (min–max) |")
	for _, p := range podPaths {
		t.WriteString(" " + p.label + " |")
	}
	t.WriteString("\n| --- | --- | --- |\n")
	row := func(label, key string) {
		fmt.Fprintf(&t, "| %s |", label)
		for _, p := range podPaths {
			fmt.Fprintf(&t, " %s |", spread(b.s.Stat(strings.ReplaceAll(key, "*", p.key))))
		}
		t.WriteString("\n")
	}
	for _, st := range podSteps {
		row(st.label+", ms", "pod_*_"+st.key)
	}
	row("= pod ready, ms", "pod_ready_*")
	row("crictl stopp + rmp (not in the row), ms", "pod_*_remove")
	for _, k := range podProcKinds {
		used := false
		for _, p := range podPaths {
			used = used || b.s.Stat("pod_pss_"+p.key+"_"+k.key).N > 0
		}
		if used {
			row("PSS "+k.label+", MiB", "pod_pss_*_"+k.key)
		}
		if k.key == "qemu" {
			row("  of which guest RAM, MiB", "pod_pss_*_qemu_ram")
			row("  of which TCG translation buffer, MiB", "pod_pss_*_qemu_tcg")
		}
	}
	row("= PSS of the pod, MiB", "pod_pss_*")
	return t.String()
}
