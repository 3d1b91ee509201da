package mappings

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
)

// FuzzParseRecords: whatever an import holds, the line parser never panics
// and stays within its limits; a refusal is bad input that names a line of
// the input; what it accepts is one record per non-blank line, in order,
// that Input takes without panicking and that export writes back to the
// same records.
func FuzzParseRecords(f *testing.F) {
	const maxTotal, maxLine = 1 << 14, 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, lines, err := parseRecords(bytes.NewReader(data), "fuzz", maxTotal, maxLine)
		nLines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			if fault.KindOf(err) != fault.Invalid {
				t.Fatalf("refusal is not bad input: %v", err)
			}
			rest, ok := strings.CutPrefix(err.Error(), "line ")
			n, convErr := strconv.Atoi(rest[:max(0, strings.Index(rest, ":"))])
			if !ok || convErr != nil || n < 1 || n > nLines {
				t.Fatalf("refusal names no line of the %d: %v", nLines, err)
			}
			return
		}
		if len(data) > maxTotal {
			t.Fatalf("accepted %d bytes, over the limit", len(data))
		}
		if len(recs) != len(lines) {
			t.Fatalf("%d records, %d line numbers", len(recs), len(lines))
		}
		split := bytes.Split(data, []byte("\n"))
		prev := 0
		for i, r := range recs {
			if lines[i] <= prev || lines[i] > len(split) {
				t.Fatalf("line numbers %v out of order or range", lines)
			}
			prev = lines[i]
			if l := bytes.TrimSuffix(split[lines[i]-1], []byte("\r")); len(l) > maxLine {
				t.Fatalf("accepted line %d of %d bytes", lines[i], len(l))
			}
			_, _ = r.Input()
		}
		if nonBlank := countNonBlank(split); nonBlank != len(recs) {
			t.Fatalf("%d non-blank lines, %d records", nonBlank, len(recs))
		}
		out, err := EncodeRecords(recs)
		if err != nil {
			t.Fatalf("export cannot write what import read: %v", err)
		}
		again, _, err := parseRecords(bytes.NewReader(out), "export", 1<<30, 1<<30)
		if err != nil {
			t.Fatalf("import refuses what export wrote: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatalf("round trip changed the records:\n%+v\n%+v", recs, again)
		}
	})
}

func countNonBlank(lines [][]byte) int {
	n := 0
	for _, l := range lines {
		if len(bytes.Trim(l, " \t\r")) > 0 {
			n++
		}
	}
	return n
}
