package mappings

import (
	"reflect"
	"testing"
)

// The fast path decodes the lines export writes for self-signed, acme and
// file mappings, and leaves everything else to the strict decoder.
func TestDecodeRecordFast(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{`{"listener":"web","hosts":["a.example.org"],"id":"a","source":"self-signed","days":90}`, true},
		{` { "listener" : "web" , "hosts" : [ "a.example.org" , "*.b.example.org" ] , "source" : "acme" , "challenge":"dns-01","dns_credential":"cf","key_type":"rsa2048","profile":"shortlived"}` + "\t\r", true},
		{`{"listener":"web","hosts":[],"source":"file","cert_file":"/c.pem","key_file":"/k.pem","allow_expired":true,"upstream":"127.0.0.1:80"}`, true},
		{`{"listener":"web","hosts":["a"],"source":"manual","cert_pem":"x","key_pem":"y","allow_expired":false,"days":-0}`, true},
		{`{}`, true},
		// Left to the strict decoder: escapes, non-ASCII, null, a key twice
		// or in another case, unknown keys, numbers it would refuse or
		// read otherwise, data after the object, not an object.
		{`{"listener":"w\u0065b","hosts":["a"],"source":"self-signed"}`, false},
		{`{"listener":"wéb","hosts":["a"],"source":"self-signed"}`, false},
		{`{"listener":null,"hosts":["a"],"source":"self-signed"}`, false},
		{`{"hosts":null}`, false},
		{`{"id":"a","id":"b"}`, false},
		{`{"ID":"a"}`, false},
		{`{"name":"a"}`, false},
		{`{"days":9.0}`, false},
		{`{"days":1e2}`, false},
		{`{"days":09}`, false},
		{`{"days":1234567890}`, false},
		{`{"days":"90"}`, false},
		{`{"allow_expired":truex}`, false},
		{`{"id":"a"} {}`, false},
		{`{"id":"a"},`, false},
		{`{"id":"a",}`, false},
		{`["a"]`, false},
		{`null`, false},
		{`{"id":"a"`, false},
		{``, false},
	} {
		r, ok := decodeRecordFast([]byte(tc.line))
		if ok != tc.ok {
			t.Errorf("%s: fast path ok = %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		want, err := decodeRecordStrict([]byte(tc.line))
		if err != nil || !reflect.DeepEqual(r, want) {
			t.Errorf("%s: fast path gives %+v, the strict one %+v, %v", tc.line, r, want, err)
		}
	}
}

// FuzzDecodeRecordFast: whatever the fast path accepts, the strict decoder
// accepts too and decodes to the same record.
func FuzzDecodeRecordFast(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		r, ok := decodeRecordFast(line)
		if !ok {
			return
		}
		want, err := decodeRecordStrict(line)
		if err != nil {
			t.Fatalf("fast path accepts what the strict one refuses (%v): %q", err, line)
		}
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("fast path gives %+v, the strict one %+v: %q", r, want, line)
		}
	})
}

// BenchmarkDecodeRecord: one line as export writes a self-signed mapping,
// by decodeRecord (the fast path) and by the strict decoder alone.
func BenchmarkDecodeRecord(b *testing.B) {
	line := []byte(`{"listener":"web","hosts":["i000000.example.org"],"id":"i000000","source":"self-signed","days":90}`)
	for _, c := range []struct {
		name   string
		decode func([]byte) (Record, error)
	}{{"fast", decodeRecord}, {"strict", decodeRecordStrict}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.decode(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
