package pod

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestFeaturesVersionsAreAccepted(t *testing.T) {
	f := Features()
	for _, v := range []string{f.OCIVersionMin, f.OCIVersionMax} {
		s := DefaultSpec()
		s.Version = v
		if err := ValidateSpec(s); err != nil {
			t.Errorf("features name version %s, which ValidateSpec refuses: %v", v, err)
		}
	}
}

func TestFeaturesListTheTables(t *testing.T) {
	f := Features()
	if len(f.Linux.Namespaces) != len(nsKinds) {
		t.Errorf("namespaces %v, table has %d", f.Linux.Namespaces, len(nsKinds))
	}
	for _, o := range f.MountOptions {
		m := specs.Mount{Destination: "/v", Source: "/src", Options: []string{o}}
		if o != readOnlyOption && !isBindMount(m) {
			t.Errorf("mount option %s listed but not acted on", o)
		}
	}
}
