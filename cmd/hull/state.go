package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/ocicli"
)

// containerState is runc's `state` and `list --format json` shape.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	PID         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
	// Sandbox is the container's pod VM; Frontend who runs it when it is
	// not this CLI (the containerd shim).
	Sandbox  string `json:"sandbox"`
	Frontend string `json:"frontend,omitempty"`
}

func toJSONState(st *ocicli.ContainerState) containerState {
	oci := ocicli.OCIState(st)
	return containerState{OCIVersion: oci.Version, ID: st.ID, PID: oci.Pid, Status: string(oci.Status), Bundle: st.Bundle,
		Rootfs: st.Rootfs, Created: st.Created, Annotations: st.Annotations, Owner: st.Owner,
		Sandbox: st.SandboxID, Frontend: st.Frontend}
}

var stateCommand = &cli.Command{
	Name:      "state",
	Usage:     "print a container's state as JSON",
	ArgsUsage: "<container-id>",
	Action: withContainer(func(c *cli.Context, rt *ocicli.Runtime, id string) error {
		_, st, err := rt.State(id)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(toJSONState(st), "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}),
}
