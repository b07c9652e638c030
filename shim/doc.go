// Package shim is hull's containerd front end: containerd-shim-hull-v2, a
// shim v2 runtime (io.containerd.hull.v2). One shim process serves a whole
// pod: it boots the pod's VM with the pod library at the first Create, owns
// the agent connection, relays every process's streams between containerd's
// FIFOs and the guest, and reports task events to containerd. There is no
// monitor and no proxy process on this path: per pod, one shim and one QEMU
// (and virtiofsd for a virtio-fs share).
//
// The binary protocol (start, delete, and the serving daemon) is in
// binary.go; the task API in service.go; what a shim leaves on disk for a
// later `delete` and for `hull list` in state.go.
package shim
