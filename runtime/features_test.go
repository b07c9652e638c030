package runtime

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Every hook kind hull lists is a field of the spec's hooks, read from the
// JSON name `hull features` prints.
func TestFeaturesHooksAreSpecFields(t *testing.T) {
	f := Features()
	if len(f.Hooks) == 0 {
		t.Fatal("no hooks listed")
	}
	for _, name := range f.Hooks {
		var h specs.Hooks
		if err := json.Unmarshal([]byte(`{"`+name+`": [{"path": "/bin/true"}]}`), &h); err != nil {
			t.Fatal(err)
		}
		if got := hostHooks[name](&h); len(got) != 1 {
			t.Errorf("hook %s: spec field holds %d hooks, want 1", name, len(got))
		}
	}
	if err := RunHooks(t.Context(), "startContainer", &specs.Hooks{}, specs.State{}); err == nil {
		t.Error("startContainer hooks run, but hull does not support them")
	}
}

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
