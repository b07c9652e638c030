package shim

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestInfo runs `-info` as containerd 2.x does, the runtime options (a
// serialized Any) on stdin, and reads the answer as containerd does: a
// RuntimeInfo whose Features typeurl decodes into the OCI features
// document (containerd logs an error on every task Create when it cannot).
func TestInfo(t *testing.T) {
	opts, err := proto.Marshal(&anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: []byte{0x12, 3, 'a', '.', 't'}})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"-info"}, Env{Stdin: bytes.NewReader(opts), Stdout: &stdout, Stderr: &stderr, Version: "v9"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var info types.RuntimeInfo
	if err := proto.Unmarshal(stdout.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "io.containerd.hull.v2" || info.Version.GetVersion() != "v9" {
		t.Errorf("name %q version %q", info.Name, info.Version.GetVersion())
	}
	// containerd's registration of the features type (core/runtime/typeurl.go).
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "features", "Features")
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := v.(*features.Features)
	if !ok || f.OCIVersionMax != specs.Version || f.Linux == nil {
		t.Errorf("features: %#v", v)
	}
}
