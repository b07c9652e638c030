package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/runtime"
)

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "start a created container",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *runtime.Runtime, id string) error {
		return rt.Start(c.Context, id)
	}),
}
