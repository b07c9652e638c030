package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MinCloneEntropy is the least entropy, in bytes, a clone accepts from the
// host: a full reseed of the kernel's CRNG (256 bits).
const MinCloneEntropy = 32

// ReseedRNG mixes entropy into the kernel's input pool and credits all of it
// (RNDADDENTROPY), then makes the CRNG reseed from the pool at once
// (RNDRESEEDCRNG). Without the reseed a clone would draw from the CRNG state
// it was saved with until the kernel's next scheduled reseed (up to a
// minute): the same numbers as every sibling.
func ReseedRNG(entropy []byte) error {
	if len(entropy) < MinCloneEntropy {
		return fmt.Errorf("reseed rng: %d bytes of entropy, want at least %d", len(entropy), MinCloneEntropy)
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed rng: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(len(entropy)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("reseed rng: %w", err)
	}
	var errno unix.Errno
	cerr := rc.Control(func(fd uintptr) {
		if _, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
			return
		}
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDRESEEDCRNG, 0)
	})
	if err := errors.Join(cerr, errnoErr(errno)); err != nil {
		return fmt.Errorf("reseed rng: %w", err)
	}
	return nil
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// SetClock sets the guest's wall clock to unixNano, the host's. A clone's
// clock resumes where the template's stood when it was saved.
func SetClock(unixNano int64) error {
	ts := unix.NsecToTimespec(unixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	return nil
}
