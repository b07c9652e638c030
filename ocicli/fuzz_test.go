package ocicli

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/pod"
)

// FuzzSpec: any config.json is accepted or refused with an error; what is
// accepted has what create relies on, and IDs and annotations never choose
// a sandbox that could name a path.
func FuzzSpec(f *testing.F) {
	b, _ := json.Marshal(pod.DefaultSpec())
	f.Add(b, "c1")
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`), "../x")
	f.Add([]byte(`{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"../../etc"}}`), "a")
	f.Fuzz(func(t *testing.T, b []byte, id string) {
		var s specs.Spec
		if json.Unmarshal(b, &s) != nil {
			return
		}
		if err := pod.ValidateSpec(&s); err == nil {
			if s.Root == nil || s.Process == nil || len(s.Process.Args) == 0 || !strings.HasPrefix(s.Process.Cwd, "/") {
				t.Fatal("validated a spec create cannot run")
			}
		}
		if ValidateID(id) != nil {
			return
		}
		sid, _ := pod.SandboxOf(id, s.Annotations)
		if sid != id && ValidateID(sid) != nil {
			// The sandbox ID comes from the caller's annotations: the
			// monitor dial and state paths must refuse it, not use it.
			st := &Store{Root: t.TempDir()}
			if _, err := st.Load(sid); err == nil {
				t.Fatalf("loaded state for invalid sandbox id %q", sid)
			}
		}
	})
}
