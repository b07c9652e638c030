// Package pod is hull's library of one pod VM and its containers: it boots
// the sandbox VM (Sandbox), mirrors its network namespace into it, applies
// its host cgroup, shares container rootfs and volumes with it, turns OCI
// specs into guest specs, and creates, starts, execs, signals, waits and
// removes containers there (Guest), handing their streams back as
// io.Reader/io.Writer (Relay). Configuration and `hull check` live here
// too, since every front end needs them.
//
// Both front ends build on it: ocicli (the runc-style CLI with its state
// dir, monitors and proxies) and the containerd shim. It never imports a
// front end, and never touches the process's own stdio, PID files or the
// CLI's state dir (see deps_test.go).
package pod
