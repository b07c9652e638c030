package runtime

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isNotFound reports whether the agent said the object does not exist.
func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }
