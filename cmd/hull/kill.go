package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default SIGTERM) to a container's process",
	ArgsUsage: "<container-id> [signal]",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "signal every process of the container"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 || c.NArg() > 2 {
			return fmt.Errorf("kill: expects a container ID and an optional signal")
		}
		sig := unix.SIGTERM
		if c.NArg() == 2 {
			s, err := parseSignal(c.Args().Get(1))
			if err != nil {
				return err
			}
			sig = s
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return rt.Kill(c.Context, c.Args().First(), sig, c.Bool("all"))
	},
}

// parseSignal accepts "9", "KILL" and "SIGKILL", and "0" (as runc does:
// no signal, only whether the process is still there).
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("unknown signal %q", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	return sig, nil
}
