// Package ocicli is hull's runc-compatible front end, the one cmd/hull
// drives: the OCI runtime command-line operations (create, start, exec,
// kill, delete, state, list, ...) over a state directory with per-container
// locks, a monitor process per sandbox that owns its pod.Sandbox and serves
// the agent API to later calls, a proxy process per container process
// standing for it on the host (its PID is the one in --pid-file), and OCI
// hooks. The VM and container work itself is package pod's.
package ocicli
