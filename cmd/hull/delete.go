package main

import "github.com/urfave/cli/v2"

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a stopped container (with --force, any container)",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill the container first if it runs"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return rt.Delete(c.Context, id, c.Bool("force"))
	},
}
