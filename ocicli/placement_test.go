package ocicli

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/pod"
)

func TestPlace(t *testing.T) {
	crio := func(typ, sid string) map[string]string {
		return map[string]string{pod.CRIOContainerType: typ, pod.CRIOSandboxID: sid}
	}
	joins := pod.NSPlan{Sandbox: "s1", Join: map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "c1"}}
	tests := []struct {
		name        string
		id          string
		annotations map[string]string
		plan        pod.NSPlan
		wantSandbox string
		wantOwner   bool
		wantErr     string
	}{
		{name: "docker: its own", id: "c9", wantSandbox: "c9", wantOwner: true},
		{name: "CRI-O app container by annotation", id: "a1", annotations: crio("container", "s1"), wantSandbox: "s1"},
		{name: "containerd CRI app container", id: "a1",
			annotations: map[string]string{pod.CRIContainerType: "container", pod.CRISandboxID: "s1"}, wantSandbox: "s1"},
		{name: "annotation and paths agree", id: "a1", annotations: crio("container", "s1"), plan: joins, wantSandbox: "s1"},
		{name: "podman: paths only", id: "a1", plan: joins, wantSandbox: "s1"},
		{name: "annotation and paths disagree", id: "a1", annotations: crio("container", "s2"), plan: joins,
			wantErr: "annotations put it in sandbox s2, but its namespace paths are sandbox s1's"},
		{name: "a pod sandbox joining another", id: "p2", annotations: crio("sandbox", "p2"), plan: joins,
			wantErr: "a sandbox of its own"},
		{name: "an app container with a network of no sandbox", id: "a1", annotations: crio("container", "s1"),
			plan: pod.NSPlan{NetNS: "/run/netns/other"}, wantErr: "not sandbox s1's"},
		{name: "a new sandbox takes its network over", id: "p1", annotations: crio("sandbox", "p1"),
			plan: pod.NSPlan{NetNS: "/run/netns/cni-1"}, wantSandbox: "p1", wantOwner: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := place(tt.id, tt.annotations, tt.plan)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Sandbox != tt.wantSandbox || got.Owner != tt.wantOwner {
				t.Errorf("placed in %q (owner %v), want %q (owner %v)", got.Sandbox, got.Owner, tt.wantSandbox, tt.wantOwner)
			}
		})
	}
}
