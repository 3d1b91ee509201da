package testkit

import (
	"bufio"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyTestsImportTestkit holds the rule Go's internal/ cannot: the
// harnesses under state/testkit are imported by tests anywhere in the module
// (cmd/p2ptls, serve/), so internal/ would forbid those tests, but no
// production file may import them, and nothing imports the benchmark program
// serve/internal/hsbench.
func TestOnlyTestsImportTestkit(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	found, err := forbiddenImports(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Error(f)
	}
}

// TestForbiddenImportsFindsLeaks runs the same check on a small module in
// testdata that breaks the rule in each way, so the check above is known to
// see a leak when there is one.
func TestForbiddenImportsFindsLeaks(t *testing.T) {
	found, err := forbiddenImports(filepath.Join("testdata", "leaky"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"commands/uses_kit.go imports example.test/leaky/state/testkit/statetest: only tests and state/testkit may import state/testkit",
		"serve/runs_bench.go imports example.test/leaky/serve/internal/hsbench: hsbench is a benchmark program, nothing imports it",
		"state/testkit/cftest/bench.go imports example.test/leaky/serve/internal/hsbench: hsbench is a benchmark program, nothing imports it",
	}
	if !slices.Equal(found, want) {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(found, "\n"), strings.Join(want, "\n"))
	}
}

// moduleRoot is the nearest directory at or above the working directory
// that holds a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// modulePath reads the module line of root/go.mod.
func modulePath(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			rest = strings.TrimSpace(rest)
			if unq, err := strconv.Unquote(rest); err == nil {
				rest = unq
			}
			return rest, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s has no module line", f.Name())
}

// forbiddenImports parses the imports of every non-test Go file of the
// module at root (whatever its build constraints) and returns, sorted, one
// line per import the rule forbids, naming the file relative to root.
func forbiddenImports(root string) ([]string, error) {
	module, err := modulePath(root)
	if err != nil {
		return nil, err
	}
	kit := module + "/state/testkit"
	bench := module + "/serve/internal/hsbench"
	under := func(path, pkg string) bool { return path == pkg || strings.HasPrefix(path, pkg+"/") }
	var found []string
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			// What the go command ignores, and other modules.
			name := d.Name()
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		inKit := strings.HasPrefix(rel, "state/testkit/")
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: import %s: %w", rel, spec.Path.Value, err)
			}
			switch {
			case under(imp, kit) && !inKit:
				found = append(found, rel+" imports "+imp+": only tests and state/testkit may import state/testkit")
			case under(imp, bench):
				found = append(found, rel+" imports "+imp+": hsbench is a benchmark program, nothing imports it")
			}
		}
		return nil
	})
	slices.Sort(found)
	return found, err
}
