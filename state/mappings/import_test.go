package mappings

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// seedEverySource adds one mapping of every source and setting export has
// to carry to s.
func seedEverySource(t *testing.T, s state.Store) {
	t.Helper()
	good := issue(t, now0, 90*day, "shop.example.com", "*.shop.example.com")
	expired := issue(t, now0.Add(-60*day), 30*day, "old.example.com")
	files := t.TempDir()
	fkp := issue(t, now0, 90*day, "file.example.com")
	cert, key := writeFile(t, files, "f.crt", chainPEM(fkp)), writeFile(t, files, "f.key", fkp.KeyPEM)

	withUpstream := selfSignedIn("", "api", 30, "up.example.com")
	withUpstream.Mapping.Upstream = "http://127.0.0.1:8080"
	expiredIn := manual("old", chainPEM(expired), expired.KeyPEM, "old.example.com")
	expiredIn.AllowExpired = true
	withProfile := acmeIn("", "tls-alpn-01", "", "alpn.example.com")
	withProfile.Mapping.KeyType, withProfile.Mapping.Profile = "rsa2048", "shortlived"
	for _, in := range []Input{
		manual("shop", chainPEM(good), good.KeyPEM, "shop.example.com", "*.shop.example.com"),
		expiredIn,
		{Mapping: state.Mapping{Listener: "web", Hosts: []string{"file.example.com"}, Source: state.SourceFile, CertFile: cert, KeyFile: key}},
		selfSignedIn("", "web", 0, "self.example.com"),
		withUpstream,
		acmeIn("", "http-01", "", "acme.example.com"),
		acmeIn("wild", "dns-01", "cf", "*.example.org", "example.org"),
		withProfile,
	} {
		if in.Mapping.Source == state.SourceACME && in.Mapping.KeyType == "" {
			in.Mapping.KeyType = "ec256" // as the command line sets it
		}
		mustAdd(t, s, in)
	}
}

// TestExportImportRoundTrip: export, then import into an empty state with
// the same listeners and credential, gives back every mapping as it was,
// and the uploaded certificates byte for byte.
func TestExportImportRoundTrip(t *testing.T) {
	src, _ := newStore(t)
	seedEverySource(t, src)
	recs, err := Export(context.Background(), src, ExportOptions{}, now0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeRecords(recs)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 8 {
		t.Fatalf("export has %d lines, want 8:\n%s", n, data)
	}
	if !bytes.Contains(data, []byte(`"id":"old"`)) || !bytes.Contains(data, []byte(`"allow_expired":true`)) {
		t.Errorf("the expired manual mapping is not exported with allow_expired:\n%s", data)
	}

	dst, _ := newStore(t)
	added, warnings, err := Import(context.Background(), dst, bytes.NewReader(data), "the export", now0)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 8 || added[7].Line != 8 {
		t.Errorf("added %+v", added)
	}
	// The export is in the order of the ids.
	line := slices.IndexFunc(recs, func(r Record) bool { return r.ID == "old" }) + 1
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], fmt.Sprintf("line %d (mapping old): ", line)) || !strings.Contains(warnings[0], "expired") {
		t.Errorf("warnings = %q, want the expired one of line %d", warnings, line)
	}
	want, got := mustConfig(t, src).Mappings, mustConfig(t, dst).Mappings
	if !reflect.DeepEqual(got, want) {
		t.Errorf("imported mappings differ:\n got %+v\nwant %+v", got, want)
	}
	for _, id := range []string{"shop", "old"} {
		for _, name := range []string{certName(id), keyName(id)} {
			a, errA := src.Read(context.Background(), name)
			b, errB := dst.Read(context.Background(), name)
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Errorf("%s differs after the round trip (%v, %v)", name, errA, errB)
			}
		}
	}
	// Self-signed mappings get a certificate of their own at once.
	for _, m := range got {
		if m.Source == state.SourceSelfSigned {
			if _, err := Load(context.Background(), dst, m); err != nil {
				t.Errorf("self-signed %s: %v", m.ID, err)
			}
		}
	}
	// And exporting the copy gives the same lines.
	again, err := Export(context.Background(), dst, ExportOptions{}, now0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, recs) {
		t.Errorf("second export differs")
	}
}

func TestExportOptions(t *testing.T) {
	s, _ := newStore(t)
	seedEverySource(t, s)
	recs, err := Export(context.Background(), s, ExportOptions{Listener: "api", NoKeys: true}, now0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Listener != "api" {
		t.Errorf("--listener api exported %+v", recs)
	}
	recs, err = Export(context.Background(), s, ExportOptions{NoKeys: true}, now0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.KeyPEM != "" {
			t.Errorf("NoKeys exported the key of %s", r.ID)
		}
		if r.Source == state.SourceManual && r.CertPEM == "" {
			t.Errorf("NoKeys left out the certificate of %s", r.ID)
		}
	}
	_, err = Export(context.Background(), s, ExportOptions{Listener: "nope"}, now0)
	statetest.WantFault(t, err, fault.NotFound, `"nope"`)
}

// importLines is an import whose line n is bad and whose other lines are good.
func importLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestImportRefusesTheFirstBadLineAndWritesNothing(t *testing.T) {
	ok1 := `{"listener":"web","hosts":["one.example.com"],"source":"self-signed"}`
	ok2 := `{"listener":"api","hosts":["two.example.com"],"source":"acme","challenge":"http-01"}`
	tests := []struct {
		name  string
		input string
		kind  fault.Kind
		msg   []string
	}{
		{"unknown field", importLines(ok1, `{"listener":"web","hosts":["x.example.com"],"source":"self-signed","colour":"red"}`), fault.Invalid, []string{"line 2: ", `unknown field "colour"`}},
		{"field in another case", importLines(ok1, ok2, `{"Listener":"web","hosts":["x.example.com"],"source":"self-signed"}`), fault.Invalid, []string{"line 3: ", `unknown field "Listener"`}},
		{"field twice", importLines(`{"listener":"web","listener":"api","hosts":["x.example.com"],"source":"self-signed"}`), fault.Invalid, []string{"line 1: ", `"listener" is given twice`}},
		{"wrong type", importLines(ok1, `{"listener":"web","hosts":"x.example.com","source":"self-signed"}`), fault.Invalid, []string{"line 2: ", `field "hosts" must be a JSON array`}},
		{"array", importLines(ok1, `[1]`), fault.Invalid, []string{"line 2: ", "JSON object"}},
		{"null", importLines(ok1, `null`), fault.Invalid, []string{"line 2: ", "JSON object"}},
		{"two objects on a line", importLines(ok1 + ok2), fault.Invalid, []string{"line 1: ", "data after the JSON object"}},
		{"object over two lines", "{\"listener\":\"web\",\n\"hosts\":[\"x.example.com\"],\"source\":\"self-signed\"}\n", fault.Invalid, []string{"line 1: ", "not closed on its line"}},
		{"comment", importLines(ok1, "# the web mappings", ok2), fault.Invalid, []string{"line 2: ", "invalid JSON"}},
		{"broken JSON", importLines(ok1, "", "", `{"listener":`), fault.Invalid, []string{"line 4: "}},
		{"wildcard with http-01", importLines(ok1, ok2, `{"listener":"web","hosts":["*.example.com"],"source":"acme","challenge":"http-01"}`), fault.Invalid, []string{"line 3: ", "DNS-01"}},
		{"unknown listener", importLines(ok1, `{"listener":"nope","hosts":["x.example.com"],"source":"self-signed"}`), fault.Invalid, []string{"line 2: ", `listener "nope" does not exist`}},
		{"relative path", importLines(`{"listener":"web","hosts":["x.example.com"],"source":"file","cert_file":"a.crt","key_file":"/a.key"}`), fault.Invalid, []string{"line 1: ", "not an absolute path"}},
		{"allow_expired with self-signed", importLines(`{"listener":"web","hosts":["x.example.com"],"source":"self-signed","allow_expired":true}`), fault.Invalid, []string{"line 1: ", "allow_expired does not apply"}},
		{"manual without key", importLines(ok1, `{"listener":"web","hosts":["x.example.com"],"source":"manual","cert_pem":"x"}`), fault.Invalid, []string{"line 2: ", "private key"}},
		{"id twice in the file", importLines(`{"listener":"web","hosts":["a.example.com"],"id":"x","source":"self-signed"}`, ok2, `{"listener":"api","hosts":["b.example.com"],"id":"x","source":"self-signed"}`), fault.Invalid, []string{"line 3: ", `mapping id "x" is given twice (first on line 1)`}},
		{"generated id given again", importLines(ok1, `{"listener":"api","hosts":["b.example.com"],"id":"one-example-com","source":"self-signed"}`), fault.Invalid, []string{"line 2: ", "given twice (first on line 1)"}},
		{"host twice in the file", importLines(ok1, ok2, `{"listener":"web","hosts":["b.example.com","One.Example.com."],"source":"self-signed"}`), fault.Invalid, []string{"line 3: ", `host "one.example.com" is given twice on listener "web" (first on line 1)`}},
		{"id in the state", importLines(ok1, `{"listener":"api","hosts":["b.example.com"],"id":"taken","source":"self-signed"}`), fault.Failure, []string{"line 2: ", `mapping "taken" already exists`}},
		{"host in the state", importLines(ok1, `{"listener":"web","hosts":["taken.example.com"],"source":"self-signed"}`), fault.Invalid, []string{"line 2: ", `already mapped on listener "web" by mapping "taken"`}},
	}
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("taken", "web", 0, "taken.example.com"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := statetest.Snapshot(t, root)
			added, _, err := Import(context.Background(), s, strings.NewReader(tc.input), "test", now0)
			statetest.WantFault(t, err, tc.kind, tc.msg...)
			if added != nil {
				t.Errorf("refused, yet added %+v", added)
			}
			statetest.AssertSame(t, before, statetest.Snapshot(t, root))
		})
	}
}

// In an import of hundreds of records, prepared in parallel, the line
// named is the first one refused, whether it is refused when read (not a
// record) or when prepared (not a valid mapping), and nothing is written.
func TestImportNamesTheFirstBadLineOfMany(t *testing.T) {
	const n = 300
	good := func(i int) string {
		return fmt.Sprintf(`{"listener":"web","hosts":["h%03d.example.com"],"source":"self-signed","days":30}`, i)
	}
	unprepared := `{"listener":"web","hosts":["bad..example.com"],"source":"self-signed"}` // refused by prepare
	unread := `{"listener":"web",`                                                         // refused when read
	tests := []struct {
		name string
		bad  map[int]string // line (1-based) -> content
		want string
	}{
		{"one unprepared", map[int]string{200: unprepared}, "line 200: "},
		{"two unprepared", map[int]string{250: unprepared, 40: unprepared}, "line 40: "},
		{"unread after unprepared", map[int]string{30: unread, 100: unprepared}, "line 30: "},
		{"unprepared before unread", map[int]string{100: unprepared, 150: unread}, "line 100: "},
		{"last unprepared", map[int]string{n: unprepared}, fmt.Sprintf("line %d: ", n)},
		// Lines are decoded in parallel too: the first still wins.
		{"two unread", map[int]string{260: unread, 20: unread}, "line 20: "},
		{"last unread", map[int]string{n: unread}, fmt.Sprintf("line %d: ", n)},
	}
	s, root := newStore(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			for i := 1; i <= n; i++ {
				if b, ok := tc.bad[i]; ok {
					lines = append(lines, b)
				} else {
					lines = append(lines, good(i))
				}
			}
			before := statetest.Snapshot(t, root)
			added, _, err := Import(context.Background(), s, strings.NewReader(importLines(lines...)), "test", now0)
			statetest.WantFault(t, err, fault.Invalid, tc.want)
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to start with %q", err, tc.want)
			}
			if added != nil {
				t.Errorf("refused, yet added %d", len(added))
			}
			statetest.AssertSame(t, before, statetest.Snapshot(t, root))
		})
	}
}

// An import whose context ends while its records are prepared stops with
// the context's error and writes nothing.
func TestImportStoppedWritesNothing(t *testing.T) {
	s, root := newStore(t)
	var input strings.Builder
	for i := range 200 {
		fmt.Fprintf(&input, `{"listener":"web","hosts":["h%03d.example.com"],"source":"self-signed"}`+"\n", i)
	}
	before := statetest.Snapshot(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	added, _, err := Import(ctx, s, strings.NewReader(input.String()), "test", now0)
	if !errors.Is(err, context.Canceled) || added != nil {
		t.Fatalf("Import = %d added, %v; want context.Canceled", len(added), err)
	}
	statetest.AssertSame(t, before, statetest.Snapshot(t, root))
}

func TestImportIdsAndBlankLines(t *testing.T) {
	s, _ := newStore(t)
	input := "\n  \t\r\n" +
		`{"listener":"web","hosts":["a.example.com"],"source":"self-signed"}` + "\r\n" +
		"\n" +
		`{"listener":"api","hosts":["A.example.com"],"source":"self-signed","days":7}` // no final newline
	added, _, err := Import(context.Background(), s, strings.NewReader(input), "test", now0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range added {
		got = append(got, fmt.Sprintf("%d:%s", a.Line, a.Mapping.ID))
	}
	// The same host on another listener: the derived id gets a suffix, as
	// two "mapping add" would give it.
	if want := []string{"3:a-example-com", "5:a-example-com-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("added %q, want %q", got, want)
	}
}

func TestImportNothingTouchesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(root, 0)
	added, _, err := Import(context.Background(), s, strings.NewReader("\n\n  \n"), "test", now0)
	if err != nil || added != nil {
		t.Fatalf("Import of blank lines = %v, %v", added, err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("an empty import created the state directory: %v", err)
	}
}

func TestImportLimits(t *testing.T) {
	line := func(n int) string { // a blank line of n bytes
		return strings.Repeat(" ", n)
	}
	tests := []struct {
		name   string
		input  string
		refuse string // "" accepts
	}{
		{"line at the limit", line(100) + "\n", ""},
		{"line at the limit with CRLF", line(100) + "\r\n", ""},
		{"last line at the limit", line(100), ""},
		{"line over the limit", line(50) + "\n" + line(101) + "\n", "line 2: the line is longer than the 100 bytes limit"},
		{"last line over the limit", line(50) + "\n" + line(103), "line 2: the line is longer than the 100 bytes limit"},
		{"input at the limit", strings.Repeat(line(99)+"\n", 10), ""},
		{"input over the limit", strings.Repeat(line(99)+"\n", 10) + "\n", "larger than the 1000 bytes limit of an import"},
		{"input over the limit in one line", line(99) + "\n" + strings.Repeat(line(99)+"\n", 9) + "x", "larger than the 1000 bytes limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, _, err := parseRecords(strings.NewReader(tc.input), "test", 1000, 100)
			if tc.refuse == "" {
				if err != nil || recs != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			statetest.WantFault(t, err, fault.Invalid, tc.refuse)
		})
	}
}

// TestImportFailedWriteLeavesNothing: when the change cannot be saved, no
// file of any mapping of it is written.
func TestImportFailedWriteLeavesNothing(t *testing.T) {
	s, root := newStore(t)
	before := statetest.Snapshot(t, root)
	var input strings.Builder
	for i := range 5 {
		fmt.Fprintf(&input, `{"listener":"web","hosts":["h%d.example.com"],"source":"self-signed"}`+"\n", i)
	}
	_, _, err := Import(context.Background(), failingStore{s}, strings.NewReader(input.String()), "test", now0)
	if err == nil {
		t.Fatal("Import succeeded on a store that cannot save the desired state")
	}
	// certs/public may stay, empty.
	after := statetest.Snapshot(t, root)
	for _, p := range []string{"p2ptls.rev", "certs", filepath.FromSlash(PublicDir)} {
		delete(before, p)
		delete(after, p)
	}
	statetest.AssertSame(t, before, after)
}
