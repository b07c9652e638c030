package shim

import (
	"strings"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// configPathOption reads ConfigPath from the runtime options containerd's
// CRI (and ctr's --runtime-config-path) send a non-runc runtime,
// runtimeoptions.v1.Options, as Kata's shim does; "" when absent or
// unreadable.
func configPathOption(opts *anypb.Any) string {
	if opts == nil || !strings.HasSuffix(opts.TypeUrl, "runtimeoptions.v1.Options") {
		return ""
	}
	var o runtimeoptions.Options
	if err := proto.Unmarshal(opts.Value, &o); err != nil {
		return ""
	}
	return o.ConfigPath
}
