//go:build !amd64

package hypervisor

func rdtsc() uint64 { return 0 }

const tscSupported = false
