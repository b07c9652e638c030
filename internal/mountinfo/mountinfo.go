// Package mountinfo reads a mount namespace's table of mounts, as the kernel
// gives it in /proc/PID/mountinfo.
package mountinfo

import (
	"os"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file, the fields hull reads.
type Mount struct {
	// ID is the mount's ID, the one statx reports as STATX_MNT_ID.
	ID uint64
	// Parent is the ID of the mount it is mounted on (its own for the
	// namespace's root).
	Parent uint64
	// Point is where it is mounted, relative to the reader's root.
	Point string
}

// Read returns the mounts of the calling thread's mount namespace, in the
// kernel's order.
func Read() ([]Mount, error) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	return Parse(string(b)), nil
}

// Parse reads a mountinfo file's text; it skips lines it cannot read.
func Parse(text string) []Mount {
	var ms []Mount
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		id, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		parent, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		ms = append(ms, Mount{ID: id, Parent: parent, Point: unescape(f[4])})
	}
	return ms
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
