package main

import (
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a stopped container (with --force, any container)",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill the container first if it runs"},
	},
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		return rt.Delete(c.Context, id, c.Bool("force"))
	}),
}
