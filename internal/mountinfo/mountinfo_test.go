package mountinfo

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	text := `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:30 / /tmp/a\040b rw - tmpfs t rw
36 35 0:31 / /tmp/a\040b/back\134slash\011tab rw - tmpfs t rw
x 22 0:32 / /not-a-number rw - tmpfs t rw
37 y 0:33 / /bad-parent rw - tmpfs t rw
short line

`
	want := []Mount{
		{ID: 22, Parent: 1, Point: "/"},
		{ID: 35, Parent: 22, Point: "/tmp/a b"},
		{ID: 36, Parent: 35, Point: "/tmp/a b/back\\slash\ttab"},
	}
	if got := Parse(text); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

func TestUnescapeLeavesOtherBackslashes(t *testing.T) {
	for in, want := range map[string]string{`a\0`: `a\0`, `a\09x`: `a\09x`, `\040`: " ", `end\`: `end\`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadHasRoot(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no mounts")
	}
}
