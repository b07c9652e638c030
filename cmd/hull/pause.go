package main

import "github.com/urfave/cli/v2"

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze a container's processes",
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
		return rt.Pause(c.Context, id)
	},
}

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
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
		return rt.Resume(c.Context, id)
	},
}
