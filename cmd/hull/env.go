package main

import (
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
)

var envCommand = &cli.Command{
	Name:  "env",
	Usage: "print the effective configuration",
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		src := rt.Config.Source
		if src == "" {
			src = "built-in defaults"
		}
		fmt.Fprintf(c.App.Writer, "# loaded from: %s\n# state root: %s\n", src, rt.Store.Root)
		return toml.NewEncoder(c.App.Writer).Encode(rt.Config)
	},
}
