// hull is a runc-compatible OCI runtime that runs every sandbox in its own
// QEMU micro-VM.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

// version is set by the build.
var version = "dev"

func main() {
	app := &cli.App{
		Name:    "hull",
		Usage:   "run OCI containers in QEMU micro-VMs",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: "/run/hull", Usage: "directory for container state"},
			&cli.StringFlag{Name: "log", Usage: "append log lines (and errors) to this file"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "log debug messages"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "ask systemd for each container's host cgroup (a transient scope named by cgroupsPath, slice:prefix:name)"},
			&cli.StringFlag{Name: "config", Usage: "configuration file (default: $HULL_CONFIG, /etc/hull/configuration.toml, installed default)"},
		},
		Commands: []*cli.Command{
			createCommand, startCommand, runCommand, stateCommand, killCommand, deleteCommand,
			execCommand, psCommand, listCommand, pauseCommand, resumeCommand, updateCommand,
			eventsCommand, specCommand, featuresCommand, checkCommand, envCommand, versionCommand, factoryCommand,
			monitorCommand, proxyCommand,
		},
		Before:          before,
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(fail(app, err))
	}
}
