package shim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

func TestGRPCError(t *testing.T) {
	if grpcError("kill", "c1", nil) != nil {
		t.Fatal("no error must stay no error")
	}
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		// What containerd maps to errdefs.ErrNotFound: a kill of a
		// process that is gone is not a failure for it.
		{fmt.Errorf("signal: %w", pod.ErrNotRunning), codes.NotFound},
		{pod.ErrNotFound, codes.NotFound},
		// An agent's answer over ttrpc keeps its code.
		{fmt.Errorf("agent: %w", status.Error(codes.FailedPrecondition, "container is paused")), codes.FailedPrecondition},
		{status.Error(codes.AlreadyExists, "exec e1 exists"), codes.AlreadyExists},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("mount: permission denied"), codes.Unknown},
	} {
		got := grpcError("kill", "c1", tc.err)
		s, ok := status.FromError(got)
		if !ok || s.Code() != tc.code {
			t.Errorf("grpcError(%v) = %v, want code %v", tc.err, got, tc.code)
			continue
		}
		if !strings.HasPrefix(s.Message(), "kill c1: ") || !strings.Contains(s.Message(), tc.err.Error()) {
			t.Errorf("grpcError(%v) says %q: want the operation, the container and the cause", tc.err, s.Message())
		}
	}
}

func TestJoinSandbox(t *testing.T) {
	// No VM yet: the task PID is 0.
	s := NewService(Options{Namespace: "k8s.io", ID: "sb"})
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "/proc/0/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/0/ns/uts"},
		{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
		{Type: specs.MountNamespace},
	}}}
	if err := s.joinSandbox(spec); err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: agentproto.ContainerNSPrefix + "sb"},
		{Type: specs.UTSNamespace, Path: agentproto.ContainerNSPrefix + "sb"},
		{Type: specs.NetworkNamespace},
		{Type: specs.MountNamespace},
	}
	for i, n := range spec.Linux.Namespaces {
		if n != want[i] {
			t.Errorf("namespace %d: %+v, want %+v", i, n, want[i])
		}
	}
	for _, path := range []string{"/proc/01/ns/ipc", "/proc/4242/ns/ipc", "/var/run/ipcns/x", "/proc/0/nsipc"} {
		spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.IPCNamespace, Path: path}}}}
		if err := s.joinSandbox(spec); err == nil {
			t.Errorf("joinSandbox took ipc namespace %s, which is not the pod's", path)
		}
	}
	if err := s.joinSandbox(&specs.Spec{}); err != nil {
		t.Errorf("a spec without linux: %v", err)
	}
}
