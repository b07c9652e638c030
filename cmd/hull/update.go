package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "change a container's resource limits",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "JSON file of OCI LinuxResources, - for stdin"},
		&cli.Int64Flag{Name: "memory", Usage: "memory limit in bytes"},
		&cli.Int64Flag{Name: "pids-limit", Usage: "maximum number of processes"},
		&cli.Int64Flag{Name: "cpu-quota", Usage: "CFS quota in microseconds"},
		&cli.Uint64Flag{Name: "cpu-period", Usage: "CFS period in microseconds"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		var res specs.LinuxResources
		if path := c.String("resources"); path != "" {
			var r io.Reader = os.Stdin
			if path != "-" {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("update: %w", err)
				}
				defer f.Close()
				r = f
			}
			if err := json.NewDecoder(r).Decode(&res); err != nil {
				return fmt.Errorf("update: resources: %w", err)
			}
		}
		if c.IsSet("memory") {
			v := c.Int64("memory")
			res.Memory = &specs.LinuxMemory{Limit: &v}
		}
		if c.IsSet("pids-limit") {
			v := c.Int64("pids-limit")
			res.Pids = &specs.LinuxPids{Limit: &v}
		}
		if c.IsSet("cpu-quota") || c.IsSet("cpu-period") {
			if res.CPU == nil {
				res.CPU = &specs.LinuxCPU{}
			}
			if c.IsSet("cpu-quota") {
				v := c.Int64("cpu-quota")
				res.CPU.Quota = &v
			}
			if c.IsSet("cpu-period") {
				v := c.Uint64("cpu-period")
				res.CPU.Period = &v
			}
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return rt.Update(c.Context, id, &res)
	},
}
