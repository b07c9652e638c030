package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/runtime"
)

// monitorCommand runs one sandbox's monitor; hull create starts it.
var monitorCommand = &cli.Command{
	Name:   runtime.MonitorCommand,
	Hidden: true,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "id", Required: true},
		&cli.IntFlag{Name: "vcpus"},
		&cli.IntFlag{Name: "memory"},
		&cli.StringFlag{Name: "netns"},
		&cli.StringFlag{Name: "cgroup"},
	},
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, true)
		if err != nil {
			return err
		}
		id := c.String("id")
		// fd 3 is the ready pipe of the create that started us.
		ready := os.NewFile(3, "ready")
		return runtime.RunMonitor(c.Context, runtime.MonitorOptions{
			Store: rt.Store,
			Sandbox: runtime.SandboxOptions{ID: id, Dir: rt.Store.SandboxDir(id), Config: rt.Config,
				VCPUs: c.Int("vcpus"), MemoryMiB: c.Int("memory"), NetNS: c.String("netns"), Log: rt.Log},
			Ready:  ready,
			Cgroup: c.String("cgroup"),
			Log:    rt.Log,
		})
	},
}

// proxyCommand stands in on the host for one container process.
var proxyCommand = &cli.Command{
	Name:   runtime.ProxyCommand,
	Hidden: true,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "sandbox", Required: true},
		&cli.StringFlag{Name: "id", Required: true},
		&cli.StringFlag{Name: "exec"},
		&cli.BoolFlag{Name: "tty"},
		&cli.BoolFlag{Name: "own-namespaces"},
	},
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, true)
		if err != nil {
			return cli.Exit("", runtime.ExitSandboxLost)
		}
		status := runtime.RunProxy(c.Context, runtime.ProxyOptions{Store: rt.Store, SandboxID: c.String("sandbox"),
			ID: c.String("id"), ExecID: c.String("exec"), Terminal: c.Bool("tty"), OwnNamespaces: c.Bool("own-namespaces"), Gate: os.NewFile(3, "gate"), Log: rt.Log})
		os.Exit(status)
		return nil
	},
}
