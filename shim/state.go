package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hull-runtime/hull/internal/atomicfile"
	"github.com/hull-runtime/hull/pod"
)

// Layout is where the shims of one root keep their state:
//
//	<root>/s/<hash>                        a pod shim's socket
//	<root>/<namespace>/<pod hash>/         a pod's directory
//	<root>/<namespace>/<pod hash>/pod.json what `delete` needs after a crash
//	<root>/<namespace>/<pod hash>/vm/      the sandbox (pod.Sandbox's Dir)
//	<root>/<namespace>/<pod hash>/containers/<id>.json  records (pod.Record)
//
// Directories are named by hashes: unix socket paths must stay under 108
// bytes, and CRI IDs are 64 characters.
type Layout struct {
	Root string
}

func shortHash(n int, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:n])
}

// PodDir is the directory of pod sid in containerd namespace ns.
func (l Layout) PodDir(ns, sid string) string {
	return filepath.Join(l.Root, ns, shortHash(8, sid))
}

// Socket is the pod shim's socket for one containerd (by its address).
func (l Layout) Socket(address, ns, sid string) string {
	return filepath.Join(l.Root, "s", shortHash(16, address, ns, sid))
}

// Files of a pod directory.
const (
	podStateFile = "pod.json"
	vmDir        = "vm"
	netnsFile    = "netns"
)

// podState is what a `delete` after a crash needs to undo a pod: the host
// processes to end, and what the shim made besides the sandbox directory.
type podState struct {
	ID        string          `json:"id"`
	Namespace string          `json:"namespace"`
	Shim      pod.ProcessRef  `json:"shim"`
	QEMU      *pod.ProcessRef `json:"qemu,omitempty"`
	Virtiofsd *pod.ProcessRef `json:"virtiofsd,omitempty"`
	// Cgroup is the host cgroupsPath the shim made for the pod, and
	// CgroupDriver what made it ("" when the shim made none).
	Cgroup       string           `json:"cgroup,omitempty"`
	CgroupDriver pod.CgroupDriver `json:"cgroupDriver,omitempty"`
	// NetNS is a network namespace the shim made (not one it was given).
	NetNS string `json:"netns,omitempty"`
}

func writePodState(dir string, st *podState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, podStateFile), b, 0o600)
}

func readPodState(dir string) (*podState, error) {
	b, err := os.ReadFile(filepath.Join(dir, podStateFile))
	if err != nil {
		return nil, err
	}
	var st podState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", podStateFile, err)
	}
	return &st, nil
}

// cleanupPod undoes a pod whose shim is gone: it ends the QEMU and virtiofsd
// that outlived it, unmounts the rootfs of each container it recorded and
// the share, removes the network namespace and cgroup it made, and the pod
// directory. What is already gone is skipped.
func cleanupPod(dir string, log *slog.Logger) error {
	st, err := readPodState(dir)
	if errors.Is(err, os.ErrNotExist) {
		st, err = &podState{}, nil
	}
	if err != nil {
		return fmt.Errorf("clean up pod %s: %w", dir, err)
	}
	var errs []error
	for name, p := range map[string]*pod.ProcessRef{"shim": &st.Shim, "QEMU": st.QEMU, "virtiofsd": st.Virtiofsd} {
		if p != nil && p.PID != os.Getpid() && p.Alive() {
			log.Warn(name+" outlived its pod", "pod", st.ID, "pid", p.PID)
			p.Kill()
			pod.WaitGone(*p, 5*time.Second)
		}
	}
	for _, r := range pod.ReadRecords(filepath.Join(pod.RecordDir(dir), "*.json")) {
		if err := unmountRootfs(filepath.Join(r.Bundle, "rootfs")); err != nil {
			errs = append(errs, err)
		}
	}
	vm := filepath.Join(dir, vmDir)
	if _, err := os.Stat(vm); err == nil {
		if err := pod.ShareOf(vm).Teardown(); err != nil {
			// Keep the directory: removing it could reach through a
			// mount that is still there into host files.
			return fmt.Errorf("clean up pod %s: %w", st.ID, errors.Join(append(errs, err)...))
		}
	}
	if st.NetNS != "" {
		errs = append(errs, pod.RemoveNetNS(st.NetNS))
	}
	if st.Cgroup != "" || st.CgroupDriver != "" { // an older shim's state names no driver: cgroupfs
		if cg, err := pod.NewHostCgroup(st.CgroupDriver, st.Cgroup, st.ID); err == nil {
			errs = append(errs, cg.Remove())
		}
	}
	errs = append(errs, os.RemoveAll(dir))
	// The namespace's directory goes with its last pod; a pod being made
	// there meanwhile keeps it (ENOTEMPTY).
	_ = os.Remove(filepath.Dir(dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up pod %s: %w", st.ID, err)
	}
	return nil
}
