package commands

import (
	"bytes"
	"strings"
	"testing"

	"github.com/olekukonko/tablewriter/pkg/twwidth"
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
