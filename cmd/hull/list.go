package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

var listCommand = &cli.Command{
	Name:  "list",
	Usage: "list containers",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print IDs only"},
	},
	Action: func(c *cli.Context) error {
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		all, err := rt.List()
		if err != nil {
			return err
		}
		out := c.App.Writer
		if c.Bool("quiet") {
			for _, st := range all {
				fmt.Fprintln(out, st.ID)
			}
			return nil
		}
		switch c.String("format") {
		case "json":
			states := make([]containerState, 0, len(all))
			for _, st := range all {
				states = append(states, toJSONState(st))
			}
			b, err := json.Marshal(states)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
		case "table":
			w := tabwriter.NewWriter(out, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\tSANDBOX\n")
			for _, st := range all {
				s := toJSONState(st)
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.PID, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner, s.Sandbox)
			}
			return w.Flush()
		default:
			return fmt.Errorf("list: --format %q: want table or json", c.String("format"))
		}
		return nil
	},
}
