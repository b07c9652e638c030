package main

import (
	"fmt"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var versionCommand = &cli.Command{
	Name:  "version",
	Usage: "print hull's version, as runc --version does",
	Action: func(c *cli.Context) error {
		fmt.Fprintf(c.App.Writer, "hull version %s\nspec: %s\ngo: %s\n", version, specs.Version, runtime.Version())
		return nil
	},
}
