package state

import (
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
)

// acme.concurrency of p2ptls.toml: a count from 1 to MaxACMEConcurrency
// reads back; 0 or no line is the default; anything else is refused with
// the line and field, as bad input (exit 2).
func TestConfigACMEConcurrency(t *testing.T) {
	tests := []struct {
		desc string
		acme string
		err  string // "" for valid
		want int
	}{
		{"unset", ``, "", 0},
		{"one", `concurrency = 1`, "", 1},
		{"the most", `concurrency = 64`, "", 64},
		{"zero: the default", `concurrency = 0`, "", 0},
		{"too many", "directory = \"https://x.test/dir\"\nconcurrency = 65", `line 4, field "acme.concurrency": concurrency 65 is not between 1 and 64`, 0},
		{"negative", `concurrency = -1`, `line 3, field "acme.concurrency"`, 0},
		{"not a number", `concurrency = "8"`, `acme.concurrency`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b := "schema_version = 2\n[acme]\n" + tc.acme + "\n"
			cfg, err := ParseConfig([]byte(b))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.ACME.Concurrency != tc.want {
					t.Errorf("concurrency %d, want %d", cfg.ACME.Concurrency, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || fault.KindOf(err) != fault.Invalid {
				t.Errorf("err %v (kind %v), want bad input containing %q", err, fault.KindOf(err), tc.err)
			}
		})
	}
}
