package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "run a process in a running container",
	ArgsUsage: "<container-id> [command [args...]]",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "JSON file with the OCI process"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "do not wait for the process"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the process's PID here"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set an environment variable"},
		&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID]"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return fmt.Errorf("exec: expects a container ID")
		}
		id := c.Args().First()
		rt, err := newRuntime(c, c.Bool("detach"))
		if err != nil {
			return err
		}
		var proc specs.Process
		if path := c.String("process"); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("exec: %w", err)
			}
			if err := json.Unmarshal(b, &proc); err != nil {
				return fmt.Errorf("exec: process %s: %w", path, err)
			}
			if c.Bool("tty") {
				proc.Terminal = true
			}
		} else {
			if c.NArg() < 2 {
				return fmt.Errorf("exec: needs a command or --process")
			}
			user, err := parseUser(c.String("user"))
			if err != nil {
				return err
			}
			proc, err = rt.ExecProcess(id, c.Args().Slice()[1:], c.StringSlice("env"), c.String("cwd"), c.Bool("tty"), user)
			if err != nil {
				return err
			}
		}
		status, err := rt.Exec(c.Context, ocicli.ExecRequest{ID: id, Process: proc, Detach: c.Bool("detach"),
			PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket")})
		if err != nil {
			return err
		}
		if status != 0 {
			return cli.Exit("", status)
		}
		return nil
	},
}

func parseUser(s string) (*specs.User, error) {
	if s == "" {
		return nil, nil
	}
	u, g, _ := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--user %q: want UID[:GID]", s)
	}
	user := &specs.User{UID: uint32(uid)}
	if g != "" {
		gid, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: want UID[:GID]", s)
		}
		user.GID = uint32(gid)
	}
	return user, nil
}
