package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/runtime"
)

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze a container's processes",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *runtime.Runtime, id string) error {
		return rt.Pause(c.Context, id)
	}),
}

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *runtime.Runtime, id string) error {
		return rt.Resume(c.Context, id)
	}),
}
