package pod

import "testing"

// As runc's cgroupfs driver: every path it accepts, placed where it
// places it.
func TestCgroupfsPath(t *testing.T) {
	for path, want := range map[string]string{
		"/kubepods/pod1/c1":                   "/kubepods/pod1/c1",
		"kubepods/pod1/c1":                    "/kubepods/pod1/c1",
		"/docker/abc/../def":                  "/docker/def",
		"../../escape":                        "/escape",
		"test.slice:cri-containerd:abc":       "/test.slice:cri-containerd:abc",
		"kubepods-pod1.slice:crio:0123abcdef": "/kubepods-pod1.slice:crio:0123abcdef",
	} {
		if got := cgroupfsPath(path); got != want {
			t.Errorf("cgroupfsPath(%q) = %q, want %q", path, got, want)
		}
	}
}
