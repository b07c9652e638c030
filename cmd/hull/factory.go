package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hull-runtime/hull/pod"
)

var factoryCommand = &cli.Command{
	Name:  "factory",
	Usage: "manage the VM template sandboxes start from ([factory] in the configuration)",
	Subcommands: []*cli.Command{
		{
			Name:  "init",
			Usage: "boot a template VM, save it and make it the one sandboxes clone",
			Action: func(c *cli.Context) error {
				rt, err := newRuntime(c, false)
				if err != nil {
					return err
				}
				t, err := pod.InitTemplate(c.Context, rt.Config, rt.Log)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "template %s made in %d ms in %s\n", t.Hash, t.Took.Milliseconds(), rt.Config.Factory.Dir)
				return nil
			},
		},
		{
			Name:  "status",
			Usage: "show the template: its shape, size, age and whether sandboxes can clone it",
			Action: func(c *cli.Context) error {
				rt, err := newRuntime(c, false)
				if err != nil {
					return err
				}
				st, err := pod.StatusOfTemplate(rt.Config)
				if errors.Is(err, pod.ErrNoTemplate) {
					fmt.Fprintf(c.App.Writer, "no template in %s\n", rt.Config.Factory.Dir)
					return nil
				}
				if err != nil {
					return err
				}
				printTemplateStatus(c, rt.Config, st)
				return nil
			},
		},
		{
			Name:  "destroy",
			Usage: "remove the template (running clones keep their memory)",
			Action: func(c *cli.Context) error {
				rt, err := newRuntime(c, false)
				if err != nil {
					return err
				}
				return pod.DestroyTemplate(rt.Config)
			},
		},
	},
}

func printTemplateStatus(c *cli.Context, cfg pod.Config, st pod.TemplateStatus) {
	t, w := st.Template, c.App.Writer
	usable := "yes"
	switch {
	case !cfg.Factory.Template:
		usable = "no: factory.template is false"
	case st.Err != nil:
		usable = "no: " + st.Err.Error()
	case !st.Matches:
		usable = "no: not the configuration's shape: " + st.Mismatch
	}
	fmt.Fprintf(w, "template:  %s (%s)\n", t.Hash, t.MemoryPath(st.Dir))
	fmt.Fprintf(w, "usable:    %s\n", usable)
	s := t.Shape
	fmt.Fprintf(w, "shape:     %s, %s, %d vCPU, %d MiB, %d NIC; hull %s\n", s.Machine, s.Accel, s.VCPUs, s.MemoryMiB, s.NICs, s.HullVersion)
	fmt.Fprintf(w, "kernel:    %s\ninitrd:    %s\nqemu:      %s\n", s.Kernel.Path, s.Initrd.Path, s.QEMU.Path)
	fmt.Fprintf(w, "size:      RAM %d MiB, of which %d MiB in memory; device state %d KiB\n",
		t.MemoryBytes>>20, st.MemoryInUse>>20, t.StateBytes>>10)
	fmt.Fprintf(w, "age:       %s (made %s in %d ms)\n", time.Since(t.Created).Round(time.Second), t.Created.Format(time.RFC3339), t.Took.Milliseconds())
}
