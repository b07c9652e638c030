package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
	"github.com/hull-runtime/hull/pod"
)

// monitorCommand runs one sandbox's monitor; hull create starts it.
var monitorCommand = &cli.Command{
	Name:   ocicli.MonitorCommand,
	Hidden: true,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "id", Required: true},
		&cli.IntFlag{Name: "vcpus"},
		&cli.IntFlag{Name: "memory"},
		&cli.StringFlag{Name: "netns"},
		&cli.StringFlag{Name: "cgroup"},
		&cli.StringFlag{Name: "cgroup-driver"},
	},
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, true)
		if err != nil {
			return err
		}
		id := c.String("id")
		// fd 3 is the ready pipe of the create that started us.
		ready := os.NewFile(3, "ready")
		return ocicli.RunMonitor(c.Context, ocicli.MonitorOptions{
			Store: rt.Store,
			Sandbox: pod.SandboxOptions{ID: id, Dir: rt.Store.SandboxDir(id), Config: rt.Config,
				VCPUs: c.Int("vcpus"), MemoryMiB: c.Int("memory"), NetNS: c.String("netns"), Log: rt.Log},
			Ready:        ready,
			Cgroup:       c.String("cgroup"),
			CgroupDriver: pod.CgroupDriver(c.String("cgroup-driver")),
			Log:          rt.Log,
		})
	},
}

// proxyCommand stands in on the host for one container process.
var proxyCommand = &cli.Command{
	Name:   ocicli.ProxyCommand,
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
			return cli.Exit("", ocicli.ExitSandboxLost)
		}
		status := ocicli.RunProxy(c.Context, ocicli.ProxyOptions{Store: rt.Store, SandboxID: c.String("sandbox"),
			ID: c.String("id"), ExecID: c.String("exec"), Terminal: c.Bool("tty"), OwnNamespaces: c.Bool("own-namespaces"), Gate: os.NewFile(3, "gate"), Log: rt.Log})
		os.Exit(status)
		return nil
	},
}
