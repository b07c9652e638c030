package main

import (
	"fmt"
	"io"
)

// cpioWriter writes a cpio archive in the "newc" format the kernel unpacks
// as an initramfs. Errors stick and are returned by Close.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) Dir(name string, perm uint32) { c.entry(name, cpioDir|perm, 2, 0, 0, nil) }

func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.entry(name, cpioFile|perm, 1, 0, 0, data)
}

func (c *cpioWriter) CharDev(name string, perm uint32, major, minor int) {
	c.entry(name, cpioChar|perm, 1, major, minor, nil)
}

// Close writes the trailer.
func (c *cpioWriter) Close() error {
	c.ino = 0
	c.entry("TRAILER!!!", 0, 1, 0, 0, nil)
	return c.err
}

func (c *cpioWriter) entry(name string, mode uint32, nlink, rmajor, rminor int, data []byte) {
	if c.err != nil {
		return
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad aligns the stream to 4 bytes after n bytes of a header or body.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
