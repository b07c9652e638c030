package ocicli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// load reads a container's state with its status brought up to date. A
// container the containerd shim runs is ErrShimOwned.
func (r *Runtime) load(id string) (*ContainerState, error) {
	st, err := r.Store.Load(id)
	if err != nil {
		return nil, r.shimOwned(id, err)
	}
	refresh(st)
	return st, nil
}

// shimRecord finds the record of a container the containerd shim runs.
func (r *Runtime) shimRecord(id string) (pod.Record, bool) {
	if r.ShimRoot == "" {
		return pod.Record{}, false
	}
	for _, rec := range pod.ShimRecords(r.ShimRoot) {
		if rec.ID == id {
			return rec, true
		}
	}
	return pod.Record{}, false
}

// shimOwned turns a container that is not in the store into ErrShimOwned
// when the containerd shim runs it; other errors pass.
func (r *Runtime) shimOwned(id string, err error) error {
	if !errors.Is(err, pod.ErrNotFound) {
		return err
	}
	if rec, ok := r.shimRecord(id); ok {
		return fmt.Errorf("%w: %s runs %s (containerd namespace %q): change it through containerd (ctr, crictl)",
			ErrShimOwned, rec.Frontend, id, rec.Namespace)
	}
	return err
}

// fromRecord is the state `list` and `state` show of a shim's container.
func fromRecord(rec pod.Record) *ContainerState {
	return &ContainerState{ID: rec.ID, Bundle: rec.Bundle, Rootfs: pod.InBundle(rec.Bundle, "rootfs"), SandboxID: rec.Sandbox,
		Status: rec.Status, Created: rec.Created, Owner: rec.Owner, Annotations: rec.Annotations,
		Proxy: pod.ProcessRef{PID: rec.PID}, Frontend: rec.Frontend}
}

// lockAndLoad takes a container's lock and reads its state. A container
// whose directory exists but whose state was never saved (a create killed
// half-way) comes back as nil state, still locked.
func (r *Runtime) lockAndLoad(id string) (*ContainerState, func(), error) {
	unlock, err := r.Store.Lock(id)
	if err != nil {
		return nil, nil, r.shimOwned(id, err)
	}
	st, err := r.load(id)
	if errors.Is(err, pod.ErrNotFound) {
		return nil, unlock, nil
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// transition checks op against the container's status under its lock, runs
// do, and saves the status op leads to.
func (r *Runtime) transition(id string, op pod.Op, do func(*ContainerState, *pod.Guest) error) error {
	st, unlock, err := r.lockAndLoad(id)
	if err != nil {
		return err
	}
	defer unlock()
	if st == nil {
		return fmt.Errorf("%w: %s", pod.ErrNotFound, id)
	}
	next, err := st.Status.Next(op)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	g, closeGuest, err := r.guest(st.SandboxID)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	defer closeGuest()
	if err := do(st, g); err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	if next != st.Status {
		st.Status = next
		return r.Store.Save(st)
	}
	return nil
}

// State returns the OCI state of a container.
func (r *Runtime) State(id string) (specs.State, *ContainerState, error) {
	st, err := r.load(id)
	if errors.Is(err, ErrShimOwned) {
		rec, _ := r.shimRecord(id)
		st, err = fromRecord(rec), nil
	}
	if err != nil {
		return specs.State{}, nil, err
	}
	return OCIState(st), st, nil
}

// List returns every container's state, sorted by ID: the CLI's own and
// the containerd shim's (read-only to the CLI).
func (r *Runtime) List() ([]*ContainerState, error) {
	ids, err := r.Store.IDs()
	if err != nil {
		return nil, err
	}
	var out []*ContainerState
	for _, id := range ids {
		st, err := r.load(id)
		if errors.Is(err, pod.ErrNotFound) {
			// A create that was killed before it saved any state: list it,
			// so that `delete --force` is seen to be needed.
			st = &ContainerState{ID: id, Status: pod.Creating}
		} else if err != nil {
			continue
		}
		out = append(out, st)
	}
	if r.ShimRoot != "" {
		for _, rec := range pod.ShimRecords(r.ShimRoot) {
			out = append(out, fromRecord(rec))
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	}
	return out, nil
}

// Start runs a created container's process, then its poststart hooks.
func (r *Runtime) Start(ctx context.Context, id string) error {
	var spec *specs.Spec
	err := r.transition(id, pod.OpStart, func(st *ContainerState, g *pod.Guest) error {
		var err error
		if spec, err = r.Store.Spec(id); err != nil {
			return err
		}
		// No startContainer hooks: see hostHooks.
		return g.StartContainer(ctx, id)
	})
	if err != nil {
		return err
	}
	if spec.Hooks != nil && len(spec.Hooks.Poststart) > 0 {
		_, st, err := r.State(id)
		if err != nil {
			return err
		}
		if err := RunHooks(ctx, "poststart", spec.Hooks, OCIState(st)); err != nil {
			return err
		}
	}
	return nil
}

// Kill sends sig to the container's init process, or with all to every
// process of it.
func (r *Runtime) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	st, err := r.load(id)
	if err != nil {
		return err
	}
	// As runc: kill --all of a stopped container signals whatever of it is
	// left (processes that outlived its init), and is no error when
	// nothing is. containerd's shim sends it after every exit.
	leftovers := all && st.Status == pod.Stopped
	if _, err := st.Status.Next(pod.OpKill); err != nil && !leftovers {
		return err
	}
	g, closeGuest, err := r.guest(st.SandboxID)
	if err != nil {
		if errors.Is(err, ErrSandboxGone) {
			if leftovers {
				return nil
			}
			return pod.ErrNotRunning
		}
		return err
	}
	defer closeGuest()
	if err := g.SignalProcess(ctx, id, "", sig, all); err != nil {
		if errors.Is(err, pod.ErrNotRunning) {
			if leftovers {
				return nil
			}
			return err
		}
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

// Delete removes a stopped container (any container with force, killing it
// first); deleting a sandbox's own container destroys the VM.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	st, unlock, err := r.lockAndLoad(id)
	if err != nil {
		return err
	}
	defer unlock()
	if st == nil {
		if force {
			// A create that died half-way leaves no state file.
			return r.cleanupPartial(ctx, id)
		}
		return fmt.Errorf("%w: %s", pod.ErrNotFound, id)
	}
	if _, err := st.Status.Next(pod.OpDelete); err != nil && !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st.Status)
	}
	g, closeGuest, gerr := r.guest(st.SandboxID)
	if gerr == nil {
		defer closeGuest()
		if st.Status != pod.Stopped {
			_ = g.SignalProcess(ctx, id, "", unix.SIGKILL, true)
		}
	}
	pod.WaitGone(st.Proxy, 10*time.Second)
	st.Proxy.Kill()
	for _, e := range st.Execs {
		e.Kill()
	}
	owner := st.SandboxID == st.ID
	if gerr == nil && !owner {
		if err := g.RemoveContainer(ctx, id, true); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if owner {
		// The monitor goes once its clients have hung up: this one first.
		if gerr == nil {
			closeGuest()
		}
		if err := r.destroySandbox(ctx, st.SandboxID); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if cg, err := pod.NewHostCgroup(st.CgroupDriver, st.CgroupsPath, id); err == nil {
		if err := cg.Remove(); err != nil {
			r.Log.Warn("remove cgroup", "container", id, "err", err)
		}
	}
	if spec, err := r.Store.Spec(id); err == nil && spec.Hooks != nil {
		st.Status = pod.Stopped
		if err := RunHooks(ctx, "poststop", spec.Hooks, OCIState(st)); err != nil {
			r.Log.Warn("poststop hook", "container", id, "err", err)
		}
	}
	return r.Store.Remove(id)
}

// cleanupPartial removes what an interrupted create left behind.
func (r *Runtime) cleanupPartial(ctx context.Context, id string) error {
	if _, err := os.Stat(r.Store.SandboxDir(id)); err == nil {
		if err := r.destroySandbox(ctx, id); err != nil {
			return err
		}
	}
	return r.Store.Remove(id)
}

// Pause freezes the container's processes.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.transition(id, pod.OpPause, func(st *ContainerState, g *pod.Guest) error {
		return g.PauseContainer(ctx, id)
	})
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.transition(id, pod.OpResume, func(st *ContainerState, g *pod.Guest) error {
		return g.ResumeContainer(ctx, id)
	})
}

// Update changes the container's resource limits in the guest.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	return r.transition(id, pod.OpUpdate, func(st *ContainerState, g *pod.Guest) error {
		return g.UpdateContainer(ctx, id, res)
	})
}

// Stats reads the container's resource usage in the guest.
func (r *Runtime) Stats(ctx context.Context, id string) (*agentproto.StatsContainerResponse, error) {
	var out *agentproto.StatsContainerResponse
	err := r.transition(id, pod.OpStats, func(st *ContainerState, g *pod.Guest) error {
		var err error
		out, err = g.StatsContainer(ctx, id)
		return err
	})
	return out, err
}

// Ps returns the host PIDs standing for the container's processes (its
// proxies) and the guest PIDs of all its processes.
func (r *Runtime) Ps(ctx context.Context, id string) (host []int, guest []int, err error) {
	st, err := r.load(id)
	if err != nil {
		return nil, nil, err
	}
	if st.Status == pod.Stopped {
		return []int{}, []int{}, nil
	}
	host = []int{}
	if st.Proxy.Alive() {
		host = append(host, st.Proxy.PID)
	}
	for _, e := range st.Execs {
		if e.Alive() {
			host = append(host, e.PID)
		}
	}
	g, closeGuest, err := r.guest(st.SandboxID)
	if err != nil {
		return host, nil, nil
	}
	defer closeGuest()
	if guest, err = g.ListProcesses(ctx, id); err != nil {
		return host, nil, fmt.Errorf("ps %s: %w", id, err)
	}
	return host, guest, nil
}
