package pod

import (
	"testing"
)

// FuzzParseConfig: any bytes give a config or an error, never a panic, and
// an accepted config is valid.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("[hypervisor]\naccel = \"tcg\"\n"))
	f.Add([]byte("[timeouts]\nboot = \"1s\"\n"))
	f.Add([]byte("[agent]\ntransport = \"vsock\"\nvsock_port = 0\n"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("accepted an invalid config: %v", verr)
		}
	})
}
