package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/hull-runtime/hull/pod"
	"github.com/hull-runtime/hull/tests/fixture"
)

const (
	bigFileMiB = 256
	smallFiles = 10000
)

// Shell scripts run by busybox sh, in the guest (paths in the container)
// and on the host (paths under the bench's temp dir) alike. The small-file
// loop uses shell built-ins only (echo > f, [ -f f ]) and one rm, so it
// times the file system, not fork under TCG.
const (
	readScript  = "dd if=%s of=/dev/null bs=1M 2>/dev/null"
	writeScript = "dd if=/dev/zero of=%[1]s bs=1M count=%[2]d conv=fsync 2>/dev/null && sync && rm %[1]s"
	smallScript = `cd %s && i=0 && while [ $i -lt %d ]; do echo x > f$i; [ -f f$i ] || exit 1; i=$((i+1)); done && rm -f f*`
)

// sharedFSes are the file systems a share can come over, by the name of
// their bench measures.
var sharedFSes = []struct{ name, typ string }{
	{"9p", pod.SharedFS9P},
	{"virtiofs", pod.SharedFSVirtioFS},
}

// sharedFS compares file access in a sandbox's container (rootfs over
// virtio-9p, then over virtio-fs) with the same busybox commands on the
// host file system that holds that rootfs.
func (b *bench) sharedFS(ctx context.Context) error {
	dir := filepath.Join(b.tmp, "fs")
	bundle := filepath.Join(dir, "bundle")
	rootfs, err := fixture.Rootfs(bundle)
	if err != nil {
		return err
	}
	hostDir := filepath.Join(dir, "host")
	for _, d := range []string{hostDir, filepath.Join(hostDir, "small"), filepath.Join(rootfs, "data/small")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	big := filepath.Join(rootfs, "bigfile")
	if err := writeRandomFile(big, bigFileMiB); err != nil {
		return err
	}
	cases := []fsCase{
		{"read", fmt.Sprintf(readScript, "/bigfile"), fmt.Sprintf(readScript, big), true},
		{"write", fmt.Sprintf(writeScript, "/data/out", bigFileMiB), fmt.Sprintf(writeScript, filepath.Join(hostDir, "out"), bigFileMiB), true},
		{"small", fmt.Sprintf(smallScript, "/data/small", smallFiles), fmt.Sprintf(smallScript, filepath.Join(hostDir, "small"), smallFiles), false},
	}
	for _, fs := range sharedFSes {
		if err := b.sharedFSCases(ctx, fs.name, fs.typ, filepath.Join(dir, "sb-"+fs.name), bundle, cases); err != nil {
			return fmt.Errorf("%s: %w", fs.name, err)
		}
	}
	b.note("Shared file systems: busybox in a container of a tuned sandbox (rootfs over virtio-9p with cache=mmap, or over virtio-fs "+
		"served by virtiofsd with cache=auto) vs the same busybox on the host's file system that holds the rootfs. Guest times are busybox `time` around the command inside the container (10 ms resolution; container "+
		"create/start/remove excluded), host times are wall time around `busybox sh -c`, taken right after each guest sample. Read: dd of a %d MiB file (hot in the host page cache) "+
		"with bs=1M; write: dd of %d MiB with conv=fsync, then sync; small files: %d times echo > f; [ -f f ] then one rm -f of all.",
		bigFileMiB, bigFileMiB, smallFiles)
	return nil
}

// fsCase is one file access pattern, as a script for the guest and one for
// the host.
type fsCase struct {
	key             string
	guestSc, hostSc string
	throughput      bool
}

// sharedFSCases runs each case n times in a sandbox whose share is of type
// typ, each guest sample followed by its host floor; the samples go under
// "<fs>_<case>_guest" and "<fs>_<case>_host".
func (b *bench) sharedFSCases(ctx context.Context, fs, typ, sbDir, bundle string, cases []fsCase) (err error) {
	cfg := b.sandboxConfig(tunedKernel, tunedImage)
	cfg.SharedFS.Type = typ
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: fs, Dir: sbDir, Config: cfg})
	if err != nil {
		return err
	}
	defer func() {
		if serr := sb.Stop(context.WithoutCancel(ctx)); err == nil {
			err = serr
		}
	}()
	guest := func(cid, script string) (time.Duration, error) {
		var stdout, stderr bytes.Buffer
		status, err := sb.Guest().Run(ctx, cid, bundle, fixture.Spec("sh", "-c", "time sh -c '"+script+"'"), pod.Stdio{Stdout: &stdout, Stderr: &stderr})
		if err != nil {
			return 0, err
		}
		if status != 0 {
			return 0, fmt.Errorf("guest %s: exit %d: %s", script, status, tail(stderr.Bytes(), 512))
		}
		return parseTime(stderr.Bytes())
	}
	host := func(script string) (time.Duration, error) {
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, "/bin/busybox", "sh", "-c", script).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("host %s: %w: %s", script, err, tail(out, 512))
		}
		return time.Since(t0), nil
	}
	for i := range b.n {
		for _, c := range cases {
			g, err := guest(fmt.Sprintf("%s%d", c.key, i), c.guestSc)
			if err != nil {
				return err
			}
			h, err := host(c.hostSc)
			if err != nil {
				return err
			}
			if c.throughput {
				b.s.Add(fs+"_"+c.key+"_guest", bigFileMiB/g.Seconds())
				b.s.Add(fs+"_"+c.key+"_host", bigFileMiB/h.Seconds())
			} else {
				b.s.Add(fs+"_"+c.key+"_guest", ms(g))
				b.s.Add(fs+"_"+c.key+"_host", ms(h))
			}
			log.Printf("  %s rep %d %s: guest %v, host %v", fs, i+1, c.key, g.Round(time.Millisecond), h.Round(time.Millisecond))
		}
	}
	return nil
}

// writeRandomFile writes mib MiB of incompressible, non-sparse data.
func writeRandomFile(path string, mib int) error {
	buf := make([]byte, 1<<20)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for range mib {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

var busyboxReal = regexp.MustCompile(`real\s+(?:(\d+)h\s*)?(\d+)m\s*([0-9.]+)s`)

// parseTime reads the "real" line busybox's time prints.
func parseTime(stderr []byte) (time.Duration, error) {
	m := busyboxReal.FindSubmatch(stderr)
	if m == nil {
		return 0, fmt.Errorf("no time in guest output %q", tail(stderr, 256))
	}
	h, _ := strconv.Atoi(string(m[1]))
	mins, _ := strconv.Atoi(string(m[2]))
	secs, err := strconv.ParseFloat(string(m[3]), 64)
	if err != nil {
		return 0, err
	}
	d := time.Duration(h)*time.Hour + time.Duration(mins)*time.Minute + time.Duration(secs*float64(time.Second))
	if d <= 0 {
		// Below busybox's resolution; count it as one tick.
		d = 10 * time.Millisecond
	}
	return d, nil
}
