package ocicli

import (
	"maps"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/hull-runtime/hull/pod"
)

// Features is the OCI features document of `hull features`: the library's,
// with the hooks this front end runs.
func Features() *features.Features {
	f := pod.Features()
	f.Hooks = slices.Sorted(maps.Keys(hostHooks))
	return f
}
