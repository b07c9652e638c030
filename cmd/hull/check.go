package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/pod"
)

var checkCommand = &cli.Command{
	Name:  "check",
	Usage: "tell whether this host can run hull, and why not",
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		failed := 0
		for _, ch := range pod.CheckHost(rt.Config, version, c.Bool("systemd-cgroup")) {
			mark := "ok  "
			if !ch.OK {
				mark = "warn"
				if ch.Required {
					mark = "FAIL"
					failed++
				}
			}
			fmt.Fprintf(c.App.Writer, "[%s] %-12s %s\n", mark, ch.Name, ch.Detail)
			if !ch.OK && ch.Fix != "" {
				fmt.Fprintf(c.App.Writer, "       fix: %s\n", ch.Fix)
			}
		}
		if failed > 0 {
			return fmt.Errorf("check: %d required check(s) failed", failed)
		}
		fmt.Fprintln(c.App.Writer, "this host can run hull")
		return nil
	},
}
