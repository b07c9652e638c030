package pod

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The library sits below both front ends: it must not import them, or the
// shim would drag in the CLI's state dir, monitors and proxies.
func TestLibraryImportsNoFrontEnd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	frontEnds := []string{"github.com/hull-runtime/hull/ocicli", "github.com/hull-runtime/hull/shim", "github.com/hull-runtime/hull/cmd"}
	for _, dep := range strings.Fields(string(out)) {
		for _, fe := range frontEnds {
			if dep == fe || strings.HasPrefix(dep, fe+"/") {
				t.Errorf("package pod depends on front end %s", dep)
			}
		}
	}
}

// forbidden are what belongs to a front end: the process's own stdio (the
// library hands streams back as io.Reader/io.Writer; the CLI's proxies and
// the shim's FIFOs are the front ends') and file locks (the CLI's state
// store takes them).
var forbidden = map[string][]string{
	"os":                    {"Stdin", "Stdout", "Stderr"},
	"syscall":               {"Flock"},
	"golang.org/x/sys/unix": {"Flock"},
}

func TestLibraryLeavesFrontEndsThings(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The names this file gives the packages of forbidden.
		local := map[string]string{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if _, ok := forbidden[p]; ok {
				name := p[strings.LastIndex(p, "/")+1:]
				if imp.Name != nil {
					name = imp.Name.Name
				}
				local[name] = p
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && local[id.Name] != "" && slices.Contains(forbidden[local[id.Name]], sel.Sel.Name) {
				t.Errorf("%s: the library uses %s.%s, a front end's", fset.Position(sel.Pos()), local[id.Name], sel.Sel.Name)
			}
			return true
		})
	}
}
