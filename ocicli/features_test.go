package ocicli

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
