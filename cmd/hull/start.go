package main

import "github.com/urfave/cli/v2"

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "start a created container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return rt.Start(c.Context, id)
	},
}
