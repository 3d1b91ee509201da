package commands

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReorderArgs(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	tests := []struct {
		desc string
		in   []string
		want []string
	}{
		{"flags after the name move before it",
			[]string{"p2ptls", "listener", "add", "web", "--addr", ":443"},
			[]string{"p2ptls", "listener", "add", "--addr", ":443", "--", "web"}},
		{"global flags before the command stay",
			[]string{"p2ptls", "--output", "json", "listener", "list"},
			[]string{"p2ptls", "--output", "json", "listener", "list"}},
		{"bool flags take no value",
			[]string{"p2ptls", "listener", "add", "web", "--quiet", "--addr=:443"},
			[]string{"p2ptls", "listener", "add", "--quiet", "--addr=:443", "--", "web"}},
		{"dash alone is an argument",
			[]string{"p2ptls", "listener", "show", "-", "--output", "json"},
			[]string{"p2ptls", "listener", "show", "--output", "json", "--", "-"}},
		{"arguments after -- stay arguments",
			[]string{"p2ptls", "listener", "show", "--", "--addr"},
			[]string{"p2ptls", "listener", "show", "--", "--addr"}},
		{"a flag without its value stays last, so that parsing says so",
			[]string{"p2ptls", "listener", "add", "web", "--addr"},
			[]string{"p2ptls", "listener", "add", "--addr"}},
		{"unknown command left alone",
			[]string{"p2ptls", "bogus", "x", "--y"},
			[]string{"p2ptls", "bogus", "x", "--y"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := reorderArgs(app, tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestGeneratedFilesAreFresh fails when completions/ or man/ do not match
// the command tree; "go generate ./..." rebuilds them.
func TestGeneratedFilesAreFresh(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(name)))
		if err != nil || string(got) != want {
			t.Errorf("%s is stale or missing (%v): run 'go generate ./...' and commit the result", name, err)
		}
	}
	again, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if files[name] != again[name] {
			t.Errorf("%s is not deterministic", name)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"listener", "listner", 1}, {"", "ca", 2}, {"cert", "cert", 0}, {"serve", "status", 5}, {"dasy", "days", 1}, {"adr", "addr", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
