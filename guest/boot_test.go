package guest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    BootConfig
	}{
		{
			name:    "serial port and share",
			cmdline: "console=ttyS0 quiet hull.port=hull.agent hull.share=hullshare\n",
			want:    BootConfig{PortName: "hull.agent", ShareTag: "hullshare", ShareFS: ShareFS9P},
		},
		{
			name:    "vsock",
			cmdline: "hull.vsock=1024 root=/dev/vda",
			want:    BootConfig{VsockPort: 1024, ShareFS: ShareFS9P},
		},
		{
			name:    "bare debug",
			cmdline: "hull.port=p hull.debug",
			want:    BootConfig{PortName: "p", Debug: true, ShareFS: ShareFS9P},
		},
		{
			name:    "debug=1",
			cmdline: "hull.port=p hull.debug=1",
			want:    BootConfig{PortName: "p", Debug: true, ShareFS: ShareFS9P},
		},
		{
			name:    "debug=0",
			cmdline: "hull.port=p hull.debug=0",
			want:    BootConfig{PortName: "p", ShareFS: ShareFS9P},
		},
		{
			name:    "last value wins",
			cmdline: "hull.port=old hull.port=new",
			want:    BootConfig{PortName: "new", ShareFS: ShareFS9P},
		},
		{
			name:    "share over virtio-fs",
			cmdline: "hull.port=p hull.share=hullshare hull.sharefs=virtiofs",
			want:    BootConfig{PortName: "p", ShareTag: "hullshare", ShareFS: ShareFSVirtio},
		},
		{
			name:    "template",
			cmdline: "hull.port=p hull.share=hullshare hull.template=1",
			want:    BootConfig{PortName: "p", ShareTag: "hullshare", ShareFS: ShareFS9P, Template: true},
		},
		{
			name:    "template=0",
			cmdline: "hull.port=p hull.template=0",
			want:    BootConfig{PortName: "p", ShareFS: ShareFS9P},
		},
		{
			name:    "lookalike keys ignored",
			cmdline: "hull.portx=a xhull.port=b hull.port=c",
			want:    BootConfig{PortName: "c", ShareFS: ShareFS9P},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.cmdline)
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.cmdline, err)
			}
			if got != tt.want {
				t.Errorf("ParseCmdline(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	for _, cmdline := range []string{
		"",
		"console=ttyS0 quiet",
		"hull.share=hullshare hull.debug",
		"hull.port=",
		"hull.vsock=0",
		"hull.vsock=abc",
		"hull.vsock=-1",
		"hull.vsock=4294967296",
		"hull.port=p hull.vsock=x",
		"hull.port=p hull.sharefs=nfs",
		"hull.port=p hull.sharefs=",
	} {
		if got, err := ParseCmdline(cmdline); err == nil {
			t.Errorf("ParseCmdline(%q) = %+v, want an error", cmdline, got)
		}
	}
}

func TestLoadModulesWithoutList(t *testing.T) {
	if err := LoadModules(filepath.Join(t.TempDir(), "load")); err != nil {
		t.Errorf("LoadModules(missing list) = %v, want nil: a kernel with everything built in", err)
	}
}

func TestLoadModulesSkipsCommentsAndBlankLines(t *testing.T) {
	list := filepath.Join(t.TempDir(), "load")
	if err := os.WriteFile(list, []byte("# dependency order\n\n   \n#/lib/modules/x.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := LoadModules(list); err != nil {
		t.Errorf("LoadModules(comments only) = %v, want nil", err)
	}
}

func TestLoadModulesMissingModule(t *testing.T) {
	dir := t.TempDir()
	module := filepath.Join(dir, "virtio_console.ko")
	list := filepath.Join(dir, "load")
	if err := os.WriteFile(list, []byte("  "+module+"  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := LoadModules(list)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), module) {
		t.Errorf("LoadModules(list naming a missing module) = %v, want a not-exist error naming %s", err, module)
	}
}
