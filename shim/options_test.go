package shim

import (
	"testing"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestConfigPathOption(t *testing.T) {
	// What containerd's CRI sends: the real message, as typeurl marshals
	// it (bare type name) and as anypb does (with the googleapis prefix).
	opts, err := proto.Marshal(&runtimeoptions.Options{TypeUrl: "io.hull.config", ConfigPath: "/etc/hull/pod.toml", ConfigBody: []byte("x = 1")})
	if err != nil {
		t.Fatal(err)
	}
	prefixed, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/hull/pod.toml"})
	if err != nil {
		t.Fatal(err)
	}
	// A field the shim does not know before config_path is skipped.
	unknownFirst := protowire.AppendTag(nil, 9, protowire.VarintType)
	unknownFirst = protowire.AppendVarint(unknownFirst, 300)
	unknownFirst = protowire.AppendTag(unknownFirst, 2, protowire.BytesType)
	unknownFirst = protowire.AppendString(unknownFirst, "/a.toml")
	// config_path with the wrong wire type is not a path.
	wrongType := protowire.AppendTag(nil, 2, protowire.VarintType)
	wrongType = protowire.AppendVarint(wrongType, 7)
	truncated := protowire.AppendTag(nil, 2, protowire.BytesType)
	truncated = protowire.AppendVarint(truncated, 50) // a length with no bytes behind
	truncated = append(truncated, "/short"...)

	for _, tc := range []struct {
		name string
		opts *anypb.Any
		want string
	}{
		{"nil", nil, ""},
		{"cri options", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: opts}, "/etc/hull/pod.toml"},
		{"cri options, prefixed type URL", prefixed, "/etc/hull/pod.toml"},
		{"no config_path", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: mustMarshal(t, &runtimeoptions.Options{TypeUrl: "x"})}, ""},
		{"unknown field first", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: unknownFirst}, "/a.toml"},
		// runc's options have other fields; field 2 there is not a path.
		{"another type", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: opts}, ""},
		{"wrong wire type", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: wrongType}, ""},
		{"truncated", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: truncated}, ""},
		{"garbage", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: []byte{0xff, 0xff, 0xff}}, ""},
	} {
		if got := configPathOption(tc.opts); got != tc.want {
			t.Errorf("%s: configPathOption = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
