package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print what this runtime supports, as JSON (OCI features)",
	Action: func(c *cli.Context) error {
		b, err := json.MarshalIndent(ocicli.Features(), "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	},
}
