package commands

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/olekukonko/tablewriter/pkg/twwidth"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// serve runs for months in the same process as these commands: the
// width cache tablewriter makes at init must be gone (see output.go), and
// tables must still line up without it.
func TestTablesWithoutTheWidthCache(t *testing.T) {
	if _, capacity, _ := twwidth.GetCacheStats(); capacity != 0 {
		t.Fatalf("tablewriter's width cache holds %d entries; output.go's init should have disabled it", capacity)
	}
	var b bytes.Buffer
	if err := printTable(&b, []string{"id", "hosts"}, [][]string{{"web", "example.com"}, {"a-longer-id", "ünïcödé.example"}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want 3:\n%s", len(lines), b.String())
	}
	col := strings.Index(lines[1], "example.com")
	if col < 0 || !strings.Contains(lines[2], "ünïcödé") {
		t.Fatalf("table lost a cell:\n%s", b.String())
	}
	// The second column starts at the same display column in every row.
	if got := len([]rune(lines[2][:strings.Index(lines[2], "ünïcödé")])); got != len([]rune(lines[1][:col])) {
		t.Fatalf("columns do not line up:\n%s", b.String())
	}
}

// TestPrintJSONListIsPrintJSON: the streamed array of "mapping list
// --output json" and "cert list --output json" is byte for byte the one
// document printJSON writes for the whole slice (the JSON contract), for
// no element, one, and many with nested values, nulls and characters
// that JSON escapes.
func TestPrintJSONListIsPrintJSON(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	many := make([]mappings.Info, 3000)
	for i := range many {
		many[i] = mappings.Info{ID: fmt.Sprintf("m%04d", i), Listener: "web", Hosts: []string{fmt.Sprintf("m%d.example.com", i), "*.ünï.example"}, Source: "acme",
			Status: "failed", LastError: `<b>"quoted"</b> & \ tab	` + "\u2028", Attempts: i}
		if i%2 == 0 {
			many[i].NotAfter, many[i].Hosts = &at, nil
		}
	}
	tests := []struct {
		desc string
		list []mappings.Info
	}{
		{desc: "empty", list: []mappings.Info{}},
		{desc: "one", list: many[:1]},
		{desc: "two", list: many[:2]},
		{desc: "many", list: many},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var want, got bytes.Buffer
			if err := printJSON(&want, tc.list); err != nil {
				t.Fatal(err)
			}
			err := printJSONList(&got, func(yield func(mappings.Info) error) error {
				for _, info := range tc.list {
					if err := yield(info); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				g, w := got.String(), want.String()
				i := 0
				for i < min(len(g), len(w)) && g[i] == w[i] {
					i++
				}
				t.Fatalf("streamed output differs at byte %d:\ngot  %q\nwant %q", i, g[max(0, i-40):min(len(g), i+40)], w[max(0, i-40):min(len(w), i+40)])
			}
		})
	}
}

// TestPrintJSONListStopsAtAnError: an error of the walk (the context
// ended) is the command's, and what was written stays a prefix of the
// document.
func TestPrintJSONListStopsAtAnError(t *testing.T) {
	stop := errors.New("stopped")
	var b bytes.Buffer
	err := printJSONList(&b, func(yield func(int) error) error {
		for i := range 10 {
			if i == 3 {
				return stop
			}
			if err := yield(i); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("error %v, want %v", err, stop)
	}
	var whole bytes.Buffer
	if err := printJSON(&whole, []int{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(whole.String(), b.String()) || b.Len() == 0 {
		t.Fatalf("wrote %q, not a prefix of %q", b.String(), whole.String())
	}
}
