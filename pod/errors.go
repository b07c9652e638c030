package pod

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors both front ends branch on; each maps them to its callers'
// wording (runc's in cmd/hull).
var (
	ErrNotFound    = errors.New("container does not exist")
	ErrNotRunning  = errors.New("container not running")
	ErrWrongStatus = errors.New("operation not allowed in this status")
)

// isNotFound reports whether the agent said the object does not exist.
func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }
