package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

// createFlags are the flags create and run share.
func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the OCI bundle"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the container process's PID here"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for compatibility (the guest never pivots)"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for compatibility"},
	}
}

// createRequest turns create's flags into a request.
func createRequest(c *cli.Context, id string) ocicli.CreateRequest {
	return ocicli.CreateRequest{ID: id, Bundle: c.String("bundle"), PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket")}
}

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container (boots its sandbox VM if it is the first)",
	ArgsUsage: "<container-id>",
	Flags: append(createFlags(),
		&cli.IntFlag{Name: "preserve-fds", Usage: "not supported in a VM; must be 0"},
	),
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		if c.Int("preserve-fds") != 0 {
			return cli.Exit("--preserve-fds: extra fds cannot cross into a VM", 1)
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return rt.Create(c.Context, createRequest(c, id))
	},
}
