package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
	"github.com/hull-runtime/hull/pod"
)

// before checks the global flags every command shares.
func before(c *cli.Context) error {
	switch c.String("log-format") {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
	}
	return nil
}

// logger writes to --log in --log-format, else (interactive commands) warnings
// to stderr; quiet children pass quiet to stay off the workload's streams.
func logger(c *cli.Context, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	var w io.Writer = io.Discard
	if path := c.String("log"); path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			w = f
		}
	} else if !quiet {
		w = os.Stderr
		if !c.Bool("debug") {
			level = slog.LevelWarn
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.String("log-format") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRuntime builds the library object every command works through.
func newRuntime(c *cli.Context, quiet bool) (*ocicli.Runtime, error) {
	cfg, err := pod.LoadConfig(c.String("config"), os.Getenv("HULL_CONFIG"))
	if err != nil {
		return nil, err
	}
	if c.Bool("debug") {
		cfg.Runtime.Debug = true
	}
	root, err := filepath.Abs(c.String("root"))
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := []string{"--root", root, "--log-format", c.String("log-format")}
	if cfg.Source != "" {
		child = append(child, "--config", cfg.Source)
	}
	if l := c.String("log"); l != "" {
		abs, _ := filepath.Abs(l)
		child = append(child, "--log", abs)
	}
	if c.Bool("debug") {
		child = append(child, "--debug")
	}
	return &ocicli.Runtime{Store: &ocicli.Store{Root: root}, Config: cfg, Self: self, ChildArgs: child, Log: logger(c, quiet),
		ShimRoot: pod.ShimRoot(os.Getenv(pod.ShimRootEnv)), SystemdCgroup: c.Bool("systemd-cgroup")}, nil
}

// fail reports err as runc does: one line on stderr and, with --log, an
// error entry in the log file, which containerd's shim reads back.
func fail(app *cli.App, err error) int {
	code := 1
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
		if err.Error() == "" {
			return code
		}
	}
	msg := message(err)
	fmt.Fprintf(os.Stderr, "hull: %s\n", msg)
	logPath, format := globalFlag("--log"), globalFlag("--log-format")
	if logPath != "" {
		if f, ferr := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); ferr == nil {
			if format == "json" {
				b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339Nano)})
				fmt.Fprintf(f, "%s\n", b)
			} else {
				fmt.Fprintf(f, "time=%q level=error msg=%q\n", time.Now().Format(time.RFC3339Nano), msg)
			}
			f.Close()
		}
	}
	return code
}

// message words errors as runc does where callers match on the words.
func message(err error) string {
	switch {
	case errors.Is(err, pod.ErrNotRunning):
		return "container not running"
	case errors.Is(err, pod.ErrNotFound):
		return err.Error() // already says "container does not exist"
	}
	return err.Error()
}

// globalFlag reads a global flag from os.Args (the cli context is gone by the
// time an error is reported); both "--f v" and "--f=v" forms.
func globalFlag(name string) string {
	args := os.Args[1:]
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if len(a) > len(name) && a[:len(name)+1] == name+"=" {
			return a[len(name)+1:]
		}
	}
	return ""
}

// oneID returns the single container ID argument of a command.
func oneID(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: expects exactly one container ID, got %d arguments", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

// withContainer is the Action of a command that takes one container ID:
// it parses the ID, builds the runtime and hands both to do.
func withContainer(do func(c *cli.Context, rt *ocicli.Runtime, id string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		return do(c, rt, id)
	}
}
