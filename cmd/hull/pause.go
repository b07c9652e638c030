package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze a container's processes",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		return rt.Pause(c.Context, id)
	}),
}

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		return rt.Resume(c.Context, id)
	}),
}
