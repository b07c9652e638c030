package pod

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// InitrdFile reads one regular file out of a cpio "newc" initrd (plain or
// gzip), as `hull check` does to learn the agent version an image carries.
func InitrdFile(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("initrd %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	name = strings.TrimPrefix(name, "/")
	hdr := make([]byte, 110)
	var off int64
	skip := func(n int64) error {
		_, err := io.CopyN(io.Discard, r, n)
		off += n
		return err
	}
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("initrd %s: %s not found: %w", path, name, err)
		}
		off += 110
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("initrd %s: not a newc cpio archive", path)
		}
		field := func(i int) int64 {
			v, _ := strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
			return v
		}
		size, nameSize := field(6), field(11)
		nb := make([]byte, nameSize)
		if _, err := io.ReadFull(r, nb); err != nil {
			return nil, fmt.Errorf("initrd %s: %w", path, err)
		}
		off += nameSize
		if err := skip((4 - off%4) % 4); err != nil {
			return nil, err
		}
		entry := strings.TrimPrefix(strings.TrimRight(string(nb), "\x00"), "./")
		if entry == "TRAILER!!!" {
			return nil, fmt.Errorf("initrd %s: %s: %w", path, name, os.ErrNotExist)
		}
		if entry == name {
			data := make([]byte, size)
			if _, err := io.ReadFull(r, data); err != nil {
				return nil, fmt.Errorf("initrd %s: %w", path, err)
			}
			return data, nil
		}
		if err := skip(size + (4-(off+size)%4)%4); err != nil {
			return nil, errors.Join(fmt.Errorf("initrd %s", path), err)
		}
	}
}
