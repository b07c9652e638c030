package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

// event is runc's `events` line.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "print a container's resource usage as JSON events",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "stats", Usage: "print one stats event and exit"},
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats events"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		if c.Duration("interval") <= 0 {
			return fmt.Errorf("events: --interval must be positive")
		}
		rt, err := newRuntime(c, false)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(c.App.Writer)
		for {
			s, err := rt.Stats(c.Context, id)
			if err != nil {
				return err
			}
			data := map[string]any{
				"memory": map[string]any{"usage": map[string]uint64{"usage": s.MemoryUsageBytes, "limit": s.MemoryLimitBytes}},
				"cpu":    map[string]any{"usage": map[string]uint64{"total": s.CpuUsageNs}},
				"pids":   map[string]uint64{"current": s.PidsCurrent},
			}
			if err := enc.Encode(event{Type: "stats", ID: id, Data: data}); err != nil {
				return err
			}
			if c.Bool("stats") {
				return nil
			}
			select {
			case <-time.After(c.Duration("interval")):
			case <-c.Context.Done():
				return nil
			}
		}
	},
}
