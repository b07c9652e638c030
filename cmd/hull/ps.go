package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "list a container's processes",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table (guest PIDs) or json (host PIDs of the process proxies)"},
	},
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		host, guest, err := rt.Ps(c.Context, id)
		if err != nil {
			return err
		}
		switch c.String("format") {
		case "json":
			b, err := json.Marshal(host)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, string(b))
		case "table":
			fmt.Fprintln(c.App.Writer, "GUEST PID")
			for _, p := range guest {
				fmt.Fprintln(c.App.Writer, p)
			}
		default:
			return fmt.Errorf("ps: --format %q: want table or json", c.String("format"))
		}
		return nil
	}),
}
