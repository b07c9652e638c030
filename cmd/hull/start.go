package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "start a created container",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		return rt.Start(c.Context, id)
	}),
}
