package pod

import (
	"slices"
	"testing"
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
		_, placed := bindModeOptions[o]
		_, handedOn := submountOptions[o]
		if !placed && !handedOn {
			t.Errorf("mount option %s listed but not acted on", o)
		}
	}
	// Docker (25+) makes a read-only bind recursive with "rro" only on a
	// runtime that lists it.
	for _, o := range append(slices.Clone(bindOptions), "ro", "rro") {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("mount option %s not listed", o)
		}
	}
}
