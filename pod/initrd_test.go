package pod

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// newc writes a cpio newc archive of the given files, as the initrd recipe
// does (cpio -H newc).
func newc(files map[string]string, order []string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add := func(name, data string, mode int) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		pad()
		b.WriteString(data)
		pad()
	}
	for _, n := range order {
		add(n, files[n], 0o100644)
	}
	add("TRAILER!!!", "", 0)
	return b.Bytes()
}

func TestInitrdFile(t *testing.T) {
	files := map[string]string{"./init": "ELF....", "./etc/hull-version": "v1.2.3\n", "./odd": "x"}
	raw := newc(files, []string{"./odd", "./init", "./etc/hull-version"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	for name, data := range map[string][]byte{"plain": raw, "gzip": gz.Bytes()} {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := InitrdFile(p, "/etc/hull-version")
		if err != nil || string(got) != "v1.2.3\n" {
			t.Errorf("%s: got %q, %v", name, got, err)
		}
		if _, err := InitrdFile(p, "etc/missing"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: missing file: %v", name, err)
		}
	}
	p := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(p, []byte("not an archive at all, more than 110 bytes of text to fill a header......................................................."), 0o644)
	if _, err := InitrdFile(p, "init"); err == nil {
		t.Error("junk accepted")
	}
}
