package pod

import "fmt"

// Status is a container's OCI status.
type Status string

// The OCI statuses.
const (
	Creating Status = "creating"
	Created  Status = "created"
	Running  Status = "running"
	Paused   Status = "paused"
	Stopped  Status = "stopped"
)

// Op is an operation on a container that depends on its status.
type Op string

// Operations with status preconditions.
const (
	OpStart  Op = "start"
	OpKill   Op = "kill"
	OpExec   Op = "exec"
	OpPause  Op = "pause"
	OpResume Op = "resume"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
	OpStats  Op = "stats"
)

// allowed is the whole state machine: which operation is legal in which
// status, and the status it leads to ("" keeps the current one).
var allowed = map[Status]map[Op]Status{
	Creating: {OpDelete: ""},
	Created:  {OpStart: Running, OpKill: "", OpDelete: "", OpUpdate: "", OpStats: ""},
	Running:  {OpKill: "", OpExec: "", OpPause: Paused, OpUpdate: "", OpStats: ""},
	Paused:   {OpResume: Running, OpKill: "", OpUpdate: "", OpStats: ""},
	Stopped:  {OpDelete: ""},
}

// Next returns the status op leads to from s, or an error if op is illegal
// in s. Killing or exec'ing a stopped container is ErrNotRunning, as runc
// says "container not running".
func (s Status) Next(op Op) (Status, error) {
	next, ok := allowed[s][op]
	if !ok {
		if s == Stopped && (op == OpKill || op == OpExec || op == OpPause || op == OpResume || op == OpUpdate || op == OpStats) {
			return s, ErrNotRunning
		}
		return s, fmt.Errorf("%w: cannot %s a %s container", ErrWrongStatus, op, s)
	}
	if next == "" {
		next = s
	}
	return next, nil
}
