// containerd-shim-hull-v2 is hull's containerd shim v2 (runtime type
// io.containerd.hull.v2): one process per pod that owns the pod's VM.
package main

import (
	"os"

	"github.com/hull-runtime/hull/pod"
	"github.com/hull-runtime/hull/shim"
)

// version is set by the build.
var version = "dev"

func main() {
	os.Exit(shim.Main(os.Args[1:], shim.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		TTRPCAddress: os.Getenv("TTRPC_ADDRESS"),
		ConfigEnv:    os.Getenv("HULL_CONFIG"),
		ShimRoot:     os.Getenv(pod.ShimRootEnv),
		Version:      version,
	}))
}
