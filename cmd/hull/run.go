package main

import (
	"context"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/ocicli"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and start a container; without --detach, wait for it and delete it",
	ArgsUsage: "<container-id>",
	Flags: append(createFlags(),
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return once the container runs"},
	),
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		if err := rt.Create(c.Context, createRequest(c, id)); err != nil {
			return err
		}
		if err := rt.Start(c.Context, id); err != nil {
			_ = rt.Delete(context.Background(), id, true)
			return err
		}
		if c.Bool("detach") {
			return nil
		}
		_, st, err := rt.State(id)
		if err != nil {
			return err
		}
		// The proxy is this process's child until we exit: its status is
		// the workload's.
		var ws unix.WaitStatus
		status := ocicli.ExitSandboxLost
		if _, err := unix.Wait4(st.Proxy.PID, &ws, 0, nil); err == nil {
			status = ws.ExitStatus()
			if ws.Signaled() {
				status = 128 + int(ws.Signal())
			}
		}
		if err := rt.Delete(context.Background(), id, true); err != nil {
			return err
		}
		if status != 0 {
			return cli.Exit("", status)
		}
		return nil
	}),
}
