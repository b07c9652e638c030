package pod

import (
	"context"
	"errors"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// dbusSystemd is systemd's manager on the system bus (the bus daemon's
// socket, or $DBUS_SYSTEM_BUS_ADDRESS).
type dbusSystemd struct {
	conn *sddbus.Conn
}

func dialSystemBus(ctx context.Context) (systemdBus, error) {
	c, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd on the system bus: %w", err)
	}
	return dbusSystemd{conn: c}, nil
}

func (b dbusSystemd) Close() { b.conn.Close() }

func (b dbusSystemd) StartTransientUnit(ctx context.Context, name string, props []sddbus.Property) error {
	done := make(chan string, 1)
	if _, err := b.conn.StartTransientUnitContext(ctx, name, "replace", props, done); err != nil {
		return busError(err)
	}
	return waitJob(ctx, done)
}

func (b dbusSystemd) AttachProcesses(ctx context.Context, unit string, pids []uint32) error {
	return busError(b.conn.AttachProcessesToUnit(ctx, unit, "", pids))
}

func (b dbusSystemd) StopUnit(ctx context.Context, name string) error {
	done := make(chan string, 1)
	if _, err := b.conn.StopUnitContext(ctx, name, "replace", done); err != nil {
		return busError(err)
	}
	return waitJob(ctx, done)
}

func (b dbusSystemd) ResetFailedUnit(ctx context.Context, name string) error {
	return busError(b.conn.ResetFailedUnitContext(ctx, name))
}

// waitJob waits for the result of the job systemd queued: "done", or why
// not ("failed", "timeout", "canceled", "dependency", "skipped").
func waitJob(ctx context.Context, done <-chan string) error {
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("systemd job %s", r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for systemd's job: %w", ctx.Err())
	}
}

// busError marks the manager's errors the driver branches on.
func busError(err error) error {
	var e dbus.Error
	if !errors.As(err, &e) {
		var p *dbus.Error
		if !errors.As(err, &p) {
			return err
		}
		e = *p
	}
	switch e.Name {
	case "org.freedesktop.systemd1.UnitExists":
		return fmt.Errorf("%w: %v", errUnitExists, err)
	case "org.freedesktop.systemd1.NoSuchUnit":
		return fmt.Errorf("%w: %v", errNoSuchUnit, err)
	}
	return err
}
