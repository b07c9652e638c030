package shim

import (
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// configPathOption reads ConfigPath from the runtime options containerd's
// CRI sends a non-runc runtime (runtimeoptions.v1.Options: type_url = 1,
// config_path = 2, config_body = 3), as Kata's shim does; "" when absent.
func configPathOption(opts *anypb.Any) string {
	if opts == nil || !strings.HasSuffix(opts.TypeUrl, "runtimeoptions.v1.Options") {
		return ""
	}
	b := opts.Value
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}
