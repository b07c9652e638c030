package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// A VM template is a booted VM whose RAM is a shared file (Config.RAM) and
// whose device state SaveState wrote to a file; a clone is a QEMU with the
// same device model, started Incoming, mapping that RAM file copy-on-write,
// into which Restore loads the state. Both use QEMU's migration with the
// x-ignore-shared capability, which leaves shared RAM out of the stream: the
// state file holds the devices (tens of KiB), the RAM file the memory.

// ErrMigration means QEMU could not save or load a VM's state.
var ErrMigration = errors.New("migration failed")

// stateFD is the name under which QEMU holds the state file's descriptor
// (getfd), for the fd: migration URI. Passing a descriptor works under
// QEMU's seccomp filter, which denies the process that exec: would spawn.
const stateFD = "hull-state"

// migrationPoll is how often SaveState asks QEMU how far the migration is.
const migrationPoll = 2 * time.Millisecond

// SaveState pauses the VM and writes its device state to path, a new file.
// Guest RAM in a shared file (Config.RAM) is not written: it stays in that
// file. The VM stays paused; it is the caller's to stop.
func (q *QEMU) SaveState(ctx context.Context, path string) error {
	if q.cfg.RAM == nil || !q.cfg.RAM.Shared {
		return fmt.Errorf("save state: guest RAM is not a shared file")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer f.Close()
	if _, err := q.run(ctx, "stop", nil); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := q.startMigration(ctx, "migrate", f); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	for {
		raw, err := q.run(ctx, "query-migrate", nil)
		if err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		var info struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			return fmt.Errorf("save state: query-migrate: %w", err)
		}
		switch info.Status {
		case "completed":
			if err := f.Sync(); err != nil {
				return fmt.Errorf("save state: %w", err)
			}
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("save state: %w: %s %s", ErrMigration, info.Status, info.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("save state: %w", ctx.Err())
		case <-time.After(migrationPoll):
		}
	}
}

// Restore loads the state that SaveState wrote to path into this QEMU,
// started with Incoming and the template's RAM file mapped copy-on-write,
// then runs the VM. A state QEMU cannot load makes it exit: Restore then
// returns ErrMigration.
func (q *QEMU) Restore(ctx context.Context, path string) error {
	if !q.cfg.Incoming {
		return fmt.Errorf("restore state: qemu was not started to receive a state")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore state: %w", err)
	}
	defer f.Close()
	if err := q.startMigration(ctx, "migrate-incoming", f); err != nil {
		return q.restoreFailed(ctx, err)
	}
	// QEMU leaves "inmigrate" once the state is in; the VM is then in the
	// state it was saved in, paused. A QEMU that cannot load it exits.
	for {
		status, err := q.status(ctx)
		if err != nil {
			return q.restoreFailed(ctx, err)
		}
		if status != "inmigrate" {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restore state: %w", ctx.Err())
		case <-q.done:
			return q.restoreFailed(ctx, ErrExited)
		case <-time.After(migrationPoll / 2):
		}
	}
	if _, err := q.run(ctx, "cont", nil); err != nil {
		return fmt.Errorf("restore state: %w", err)
	}
	return nil
}

// restoreFailed explains err, met while QEMU loaded a state. QEMU exits
// when it cannot load one, and its QMP connection may break before the
// exit is seen: unless ctx ended, it is given the quit timeout to be gone,
// and a QEMU gone is ErrMigration with its last words.
func (q *QEMU) restoreFailed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		select {
		case <-q.done:
		case <-ctx.Done():
		case <-time.After(q.timeouts.Quit):
		}
	}
	if q.exited() {
		return fmt.Errorf("restore state: %w: qemu exited%s", ErrMigration, q.stderrTail())
	}
	return fmt.Errorf("restore state: %w", err)
}

// startMigration hands QEMU the state file and starts command ("migrate"
// or "migrate-incoming") on it, leaving shared RAM out.
func (q *QEMU) startMigration(ctx context.Context, command string, f *os.File) error {
	caps := map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}
	if _, err := q.run(ctx, "migrate-set-capabilities", caps); err != nil {
		return err
	}
	if _, err := q.runWithFile(ctx, "getfd", map[string]any{"fdname": stateFD}, f); err != nil {
		return err
	}
	_, err := q.run(ctx, command, map[string]any{"uri": "fd:" + stateFD})
	return err
}
