package main

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print what this runtime supports, as JSON (OCI features)",
	Action: func(c *cli.Context) error {
		f := map[string]any{
			"ociVersionMin": "1.0.0",
			"ociVersionMax": specs.Version,
			"hooks":         []string{"prestart", "createRuntime", "poststart", "poststop"},
			"mountOptions":  []string{"bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec"},
			"linux": map[string]any{
				"namespaces": []string{"pid", "ipc", "uts", "mount", "network", "user", "cgroup"},
				"cgroup":     map[string]bool{"v1": true, "v2": false, "systemd": false},
				"seccomp":    map[string]bool{"enabled": true},
			},
			"annotations": map[string]string{"io.hull.vm": "each sandbox runs in its own QEMU VM"},
		}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	},
}
