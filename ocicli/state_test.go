package ocicli

import (
	"os"
	"testing"

	"github.com/hull-runtime/hull/pod"
)

func TestProcessRefKillNeverSignalsGroups(t *testing.T) {
	// kill(-1) or kill(0) would end every process or the whole group: a
	// ref with such a PID must be a no-op (the test survives to say so).
	for _, pid := range []int{-1, 0, 1} {
		pod.ProcessRef{PID: pid}.Kill()
	}
	self, err := pod.RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !self.Alive() {
		t.Fatal("own process should be alive")
	}
	stale := self
	stale.StartTime++
	if stale.Alive() {
		t.Fatal("a ref with another start time must not count as alive")
	}
	stale.Kill() // must not signal us: the start time does not match
}
