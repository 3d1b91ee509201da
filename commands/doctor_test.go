package commands

import (
	"bytes"
	"strings"
	"testing"

	"github.com/olekukonko/tablewriter/pkg/twwidth"

	"github.com/p2pstream/p2ptls/state/doctor"
)

// TestDoctorTableFits100Columns renders checks with long messages, hints,
// paths longer than a line and non-ASCII text through tablewriter: every
// line fits doctorWidth, no word is lost, and each hint starts a line.
func TestDoctorTableFits100Columns(t *testing.T) {
	long := "/var/lib/" + strings.Repeat("very-long-directory-name/", 8) + "certs/management/server.key"
	rep := doctor.Report{Checks: []doctor.Check{
		{ID: "state.permissions", Status: doctor.Fail,
			Message: "keys and secrets that group or others may read: " + long + " (0644), " + long + ".bak (0640)",
			Hint:    "chmod 600 " + long + " " + long + ".bak; keys and secrets must be readable by the owner only, as p2ptls writes them"},
		{ID: "management.public_url", Status: doctor.Warn,
			Message: "MANAGEMENT_PUBLIC_URL is not set: agents need the URL they reach management at, and the server certificate must carry its host (ünïcödé straße ≠ ascii)",
			Hint:    "set MANAGEMENT_PUBLIC_URL=https://mgmt.example.com:8443 in serve's environment, then run 'p2ptls ca renew-server' or restart serve"},
		{ID: "mappings.wildcard_challenge_with_a_long_id", Status: doctor.OK, Message: "every wildcard mapping uses DNS-01"},
	}}
	for _, quiet := range []bool{false, true} {
		var out bytes.Buffer
		g := &Globals{Output: outputTable, Quiet: quiet, Stdout: &out, Stderr: &out}
		if err := printDoctor(g, rep); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		for _, l := range lines {
			if w := twwidth.Width(l); w > doctorWidth {
				t.Errorf("line of %d columns (quiet %v): %q", w, quiet, l)
			}
		}
		text := strings.Join(strings.Fields(out.String()), "")
		for _, ch := range rep.Checks {
			if quiet && ch.Status == doctor.OK {
				continue
			}
			// Cut words join again: nothing of the message or hint is lost.
			for _, s := range []string{ch.Message, ch.Hint} {
				if !strings.Contains(text, strings.Join(strings.Fields(s), "")) {
					t.Errorf("table lost text of %s: %q\n%s", ch.ID, s, out.String())
				}
			}
		}
		hints := 0
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "hint: ") {
				hints++
			}
		}
		if hints != 2 {
			t.Errorf("%d lines start with a hint, want 2:\n%s", hints, out.String())
		}
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  []string
	}{
		{"a bb ccc", 4, []string{"a bb", "ccc"}},
		{"abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"x abcdefghij y", 4, []string{"x", "abcd", "efgh", "ij y"}},
		{"", 10, []string{""}},
		{"ünï cödé", 4, []string{"ünï", "cödé"}},
	} {
		if got := wrap(tc.s, tc.width); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrap(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}
