package commands

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// fullInfo has every field set, to values that JSON escapes where it can.
func fullInfo() mappings.Info {
	at := time.Date(2026, 6, 1, 12, 0, 0, 123456789, time.UTC)
	later := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	zone := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 2*3600+30*60))
	return mappings.Info{
		ID: "m1", Listener: "web<>", Hosts: []string{"a.example.com", "*.ünï.example"}, Source: "acme",
		Challenge: "dns-01", DNSCredential: "cf&co", Profile: "short<lived>", KeyType: "rsa<4096>", Upstream: "http://127.0.0.1:8080/?a=1&b=<2>",
		Status: "failed", NotBefore: &at, NotAfter: &later, NextRenewalAt: &zone,
		LastError:         "\"quoted\" \\ \b\f\n\r\t\x00\x01\x1f\x7f \u2028\u2029 \xff\xfe bad \xe2\x82 end",
		FingerprintSHA256: "AB:CD", CertFile: "/state/mappings/m1/cert.pem", KeyFile: "/state/mappings/m1/key.pem",
		IssuedAt: &at, LastAttemptAt: &at, Attempts: -3, RetryAt: &later, ServedBy: "w1,w2",
		ARIWindowStart: &zone, ARIWindowEnd: &later, ARIExplanationURL: "https://ca.example/why?a=1&b=<2>",
		LastErrorDetail: "a.example.com: \"full\"\n*.ünï.example: \xff text", BackoffReason: "rate_limited",
	}
}

// TestInfoJSONIsMarshalIndent: the hand-written encoder of the streamed
// lists writes what encoding/json does, for an Info with every field set
// (a field added to Info and not to the encoder fails here), and for the
// empty and nil cases.
func TestInfoJSONIsMarshalIndent(t *testing.T) {
	full := fullInfo()
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullInfo leaves field %s unset: set it, and teach appendInfoJSON it", v.Type().Field(i).Name)
		}
	}
	noHosts, nilHosts := full, full
	noHosts.Hosts, nilHosts.Hosts = []string{}, nil
	oneHost := full
	oneHost.Hosts = []string{"only.example.com"}
	tests := []struct {
		desc string
		info mappings.Info
	}{
		{"every field", full},
		{"zero", mappings.Info{}},
		{"no hosts", noHosts},
		{"nil hosts", nilHosts},
		{"one host", oneHost},
		{"every ASCII byte", mappings.Info{ID: asciiBytes(), Hosts: []string{asciiBytes()}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			want, err := json.MarshalIndent(tc.info, "  ", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendInfoJSON([]byte("prefix"), &tc.info)
			if err != nil {
				t.Fatal(err)
			}
			if g, ok := bytes.CutPrefix(got, []byte("prefix")); !ok || !bytes.Equal(g, want) {
				t.Fatalf("appendInfoJSON:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestInfoJSONRefusesWhatJSONRefuses: a time JSON cannot write (a year
// beyond 9999, from a hand-edited meta.toml) fails the encoder too,
// rather than writing a document encoding/json would not.
func TestInfoJSONRefusesWhatJSONRefuses(t *testing.T) {
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	info := mappings.Info{ID: "m", RetryAt: &far}
	if _, err := json.MarshalIndent(info, "  ", "  "); err == nil {
		t.Fatal("encoding/json writes year 10000; this test needs another refused value")
	}
	if b, err := appendInfoJSON(nil, &info); err == nil {
		t.Fatalf("appendInfoJSON wrote %s, want an error", b)
	}
}

func asciiBytes() string {
	var b strings.Builder
	for c := range 128 {
		b.WriteByte(byte(c))
	}
	return b.String()
}

// FuzzInfoJSON: for any strings, the encoder writes what encoding/json
// does (seeds in testdata/fuzz/FuzzInfoJSON).
func FuzzInfoJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, id, host, lastError string, attempts int, unix int64) {
		at := time.Unix(unix, 0).UTC()
		info := mappings.Info{ID: id, Hosts: []string{host, id}, LastError: lastError, Upstream: host + lastError, Attempts: attempts, NotAfter: &at}
		want, werr := json.MarshalIndent(info, "  ", "  ")
		got, gerr := appendInfoJSON(nil, &info)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("encoding/json error %v, appendInfoJSON error %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendInfoJSON:\n%s\nwant\n%s", got, want)
		}
	})
}
