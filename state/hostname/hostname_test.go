package hostname

import (
	"strings"
	"testing"
)

var (
	label63 = strings.Repeat("a", 63)
	// 4 labels of 63 plus "com" and the dots: 4*64 + 3 = 259 octets.
	tooLong = strings.Repeat(label63+".", 4) + "com"
	// 3 labels of 63, one of 61 and the dots: exactly 253 octets.
	longest = strings.Repeat(label63+".", 3) + strings.Repeat("b", 61)
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		desc, in, want string
		err            string // a phrase the error must contain; "" means accepted
	}{
		{desc: "plain name", in: "example.com", want: "example.com"},
		{desc: "subdomain", in: "www.example.com", want: "www.example.com"},
		{desc: "digits and hyphen", in: "a-1.example.com", want: "a-1.example.com"},
		{desc: "uppercase", in: "WWW.Example.COM", want: "www.example.com"},
		{desc: "trailing dot", in: "example.com.", want: "example.com"},
		{desc: "surrounding space", in: "  example.com \t", want: "example.com"},
		{desc: "wildcard", in: "*.example.com", want: "*.example.com"},
		{desc: "wildcard uppercase trailing dot", in: "*.Example.COM.", want: "*.example.com"},
		{desc: "IDN", in: "bücher.example", want: "xn--bcher-kva.example"},
		{desc: "IDN uppercase", in: "BÜCHER.Example", want: "xn--bcher-kva.example"},
		{desc: "IDN wildcard", in: "*.bücher.example", want: "*.xn--bcher-kva.example"},
		{desc: "IDN fullwidth", in: "ｅｘａｍｐｌｅ。com", want: "example.com"},
		{desc: "A-label kept", in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{desc: "63-octet label", in: label63 + ".com", want: label63 + ".com"},
		{desc: "253 octets", in: longest, want: longest},

		{desc: "empty", in: "", err: `host "" is empty`},
		{desc: "only space", in: "   ", err: `host "   " is empty`},
		{desc: "only dot", in: ".", err: "is empty"},
		{desc: "too long", in: tooLong, err: "259 octets long; shorten it to at most 253"},
		{desc: "254 octets", in: longest + "b", err: "254 octets long"},
		{desc: "label too long", in: label63 + "a.com", err: "label of 64 octets"},
		{desc: "doubled dot", in: "a..b", err: `host "a..b" has an empty label; remove the doubled dot`},
		{desc: "two trailing dots", in: "example.com..", err: "remove the doubled dot"},
		{desc: "leading dot", in: ".example.com", err: "remove the leading dot"},
		{desc: "leading hyphen", in: "-a.example.com", err: `label "-a" starting or ending with a hyphen`},
		{desc: "trailing hyphen", in: "a.b-.com", err: `label "b-" starting or ending`},
		{desc: "underscore", in: "_acme.example.com", err: `contains "_"`},
		{desc: "space inside", in: "a b.example.com", err: `contains " "`},
		{desc: "IDN disallowed rune", in: "bü_cher.example", err: "not a valid internationalised domain name"},
		{desc: "bad A-label", in: "xn--a.example", err: `label "xn--a", which is not valid punycode`},
		{desc: "bad A-label code points", in: "xn--abc.example", err: "not valid punycode"},
		{desc: "reserved label", in: "ab--c.example", err: "reserved"},
		{desc: "single label", in: "localhost", err: `host "localhost" is a single label; a public certificate needs a fully qualified name`},
		{desc: "single IDN label", in: "münchen", err: "is a single label"},
		{desc: "IPv4 with port", in: "192.0.2.1:443", err: `host "192.0.2.1:443" includes a scheme, port or path; give only the address, e.g. "192.0.2.1"`},
		{desc: "bracketed IPv6 with port", in: "[::1]:443", err: `give only the address, e.g. "::1"`},
		{desc: "bad IPv4", in: "192.0.2.256", err: "is not a valid IPv4 address"},
		{desc: "port", in: "example.com:443", err: `host "example.com:443" includes a scheme, port or path; give only the host name, e.g. "example.com"`},
		{desc: "scheme", in: "https://example.com", err: `give only the host name, e.g. "example.com"`},
		{desc: "path", in: "example.com/x", err: `give only the host name, e.g. "example.com"`},
		{desc: "full URL", in: "https://user@example.com:8443/x?y", err: `e.g. "example.com"`},
		{desc: "no guess", in: "a:b:c", err: "give only the host name"},
		{desc: "wildcard alone", in: "*", err: `wildcard "*" needs at least two labels after "*."`},
		{desc: "wildcard under TLD", in: "*.com", err: "needs at least two labels"},
		{desc: "double wildcard", in: "*.*.example.com", err: "not the whole leftmost label"},
		{desc: "partial wildcard", in: "a*.example.com", err: "not the whole leftmost label"},
		{desc: "inner wildcard", in: "a.*.example.com", err: "not the whole leftmost label"},
		{desc: "wildcard without dot", in: "*example.com", err: "not the whole leftmost label"},

		// Invisible code points: IDNA mapping drops some of them silently
		// ("a\u200bb" would become "ab"), so each is refused by name and place.
		{desc: "zero width space", in: "sh\u200bop.example.com", err: `contains U+200B ZERO WIDTH SPACE at character 3`},
		{desc: "zero width space at end", in: "shop.example.com\u200b", err: "U+200B ZERO WIDTH SPACE at character 17"},
		{desc: "soft hyphen", in: "sh\u00adop.example.com", err: "U+00AD SOFT HYPHEN at character 3"},
		{desc: "ZWJ", in: "a\u200db.example.com", err: "U+200D ZERO WIDTH JOINER"},
		{desc: "ZWNJ", in: "a\u200cb.example.com", err: "U+200C ZERO WIDTH NON-JOINER"},
		{desc: "bidi override", in: "\u202eexample.com", err: "U+202E RIGHT-TO-LEFT OVERRIDE at character 1"},
		{desc: "bidi mark", in: "a\u200eb.example.com", err: "U+200E LEFT-TO-RIGHT MARK"},
		{desc: "bidi isolate", in: "a\u2066b.example.com", err: "U+2066 LEFT-TO-RIGHT ISOLATE"},
		{desc: "word joiner", in: "a\u2060b.example.com", err: "U+2060 WORD JOINER"},
		{desc: "BOM", in: "\ufeffexample.com", err: "U+FEFF ZERO WIDTH NO-BREAK SPACE"},
		{desc: "variation selector", in: "a\ufe0fb.example.com", err: "U+FE0F an invisible"},
		{desc: "mongolian selector", in: "a\u180bb.example.com", err: "U+180B"},
		{desc: "grapheme joiner", in: "a\u034fb.example.com", err: "U+034F COMBINING GRAPHEME JOINER"},
		{desc: "hangul filler", in: "a\u3164b.example.com", err: "U+3164 HANGUL FILLER"},
		{desc: "no-break space", in: "a\u00a0b.example.com", err: "U+00A0 NO-BREAK SPACE"},
		{desc: "ideographic space", in: "a\u3000b.example.com", err: "U+3000 IDEOGRAPHIC SPACE"},
		{desc: "private use", in: "a\ue000b.example.com", err: "U+E000 an invisible"},
		{desc: "tag character", in: "a\U000e0041b.example.com", err: "U+E0041"},
		{desc: "invisible in IDN", in: "bü\u200bcher.example", err: "U+200B ZERO WIDTH SPACE at character 3"},
		{desc: "invisible in wildcard", in: "*.a\u200bb.example.com", err: "at character 4"},
		{desc: "C1 control", in: "a\u0085b.example.com", err: "U+0085"},
		{desc: "invalid UTF-8", in: "a\xffb.example.com", err: "is not valid UTF-8"},
		{desc: "no-break space around", in: "\u00a0example.com", err: "U+00A0 NO-BREAK SPACE at character 1"},
		{desc: "ideographic space after", in: "example.com\u3000", err: "U+3000 IDEOGRAPHIC SPACE at character 12"},
		{desc: "next line after", in: "example.com\u0085", err: "U+0085"},
		{desc: "combining accent kept", in: "a\u0301.example.com", want: "xn--1ca.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Normalize(tc.in)
			checkResult(t, tc.in, got, err, tc.want, tc.err)
		})
	}
}

func checkResult(t *testing.T, in, got string, err error, want, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("%q: unexpected error: %v", in, err)
	case wantErr == "" && got != want:
		t.Fatalf("%q: got %q, want %q", in, got, want)
	case wantErr != "" && err == nil:
		t.Fatalf("%q: got %q, want an error containing %q", in, got, wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("%q: error %q does not contain %q", in, err, wantErr)
	}
}

func TestIsWildcard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"*.example.com", true},
		{"example.com", false},
		{"a.*.example.com", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := IsWildcard(tc.in); got != tc.want {
				t.Fatalf("IsWildcard(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestWildcardFor(t *testing.T) {
	tests := []struct{ desc, in, want string }{
		{"three labels", "a.example.com", "*.example.com"},
		{"four labels", "a.b.example.com", "*.b.example.com"},
		{"two labels", "example.com", ""},
		{"one label", "localhost", ""},
		{"empty", "", ""},
		{"already wildcard", "*.example.com", ""},
		{"empty first label", ".example.com", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := WildcardFor(tc.in); got != tc.want {
				t.Fatalf("WildcardFor(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		desc, pattern, name string
		want                bool
	}{
		{"exact", "example.com", "example.com", true},
		{"different", "example.com", "example.org", false},
		{"exact is not a suffix", "example.com", "a.example.com", false},
		{"wildcard one label", "*.example.com", "a.example.com", true},
		{"wildcard not the apex", "*.example.com", "example.com", false},
		{"wildcard one label only", "*.example.com", "a.b.example.com", false},
		{"wildcard empty label", "*.example.com", ".example.com", false},
		{"wildcard other domain", "*.example.com", "a.example.org", false},
		{"wildcard suffix trick", "*.example.com", "a.badexample.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Matches(tc.pattern, tc.name); got != tc.want {
				t.Fatalf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
			}
		})
	}
}

func TestNormalizeSNI(t *testing.T) {
	tests := []struct{ desc, in, want string }{
		{"normal", "www.example.com", "www.example.com"},
		{"uppercase", "WWW.Example.COM", "www.example.com"},
		{"trailing dot", "example.com.", "example.com"},
		{"only one trailing dot", "example.com..", "example.com."},
		{"empty", "", ""},
		{"non-ASCII untouched", "BÜCHER.example", "bÜcher.example"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := NormalizeSNI(tc.in); got != tc.want {
				t.Fatalf("NormalizeSNI(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { NormalizeSNI("www.example.com.") }); n != 0 {
		t.Errorf("NormalizeSNI allocates %v times on normal input, want 0", n)
	}
}

func TestValidateListenAddr(t *testing.T) {
	tests := []struct {
		desc, in, want string
		err            string
	}{
		{desc: "all interfaces", in: ":443", want: ":443"},
		{desc: "IPv4", in: "127.0.0.1:8443", want: "127.0.0.1:8443"},
		{desc: "IPv4 unspecified", in: "0.0.0.0:80", want: "0.0.0.0:80"},
		{desc: "IPv6 loopback", in: "[::1]:443", want: "[::1]:443"},
		{desc: "IPv6 unspecified", in: "[::]:443", want: "[::]:443"},
		{desc: "IPv6 canonical", in: "[2001:DB8:0:0::1]:443", want: "[2001:db8::1]:443"},
		{desc: "IPv6 zone", in: "[fe80::1%eth0]:443", want: "[fe80::1%eth0]:443"},
		{desc: "single label", in: "localhost:443", want: "localhost:443"},
		{desc: "DNS name normalised", in: " Web.Example.COM.:443 ", want: "web.example.com:443"},
		{desc: "IDN", in: "bücher.example:443", want: "xn--bcher-kva.example:443"},
		{desc: "leading zeros", in: ":0443", want: ":443"},
		{desc: "highest port", in: ":65535", want: ":65535"},

		{desc: "no colon", in: "example.com", err: `listen address "example.com" is not HOST:PORT`},
		{desc: "bare IPv6", in: "::1:443", err: "is not HOST:PORT"},
		{desc: "empty", in: "", err: "is not HOST:PORT"},
		{desc: "no port", in: "localhost:", err: `has no port; add one, e.g. "localhost:443"`},
		{desc: "port zero", in: "[::1]:0", err: `listen address "[::1]:0" has port 0; a listener needs a fixed port`},
		{desc: "service name", in: ":https", err: `has port "https", which is not a number; give the port number`},
		{desc: "signed port", in: ":+443", err: "not a number"},
		{desc: "port too high", in: "example.com:70000", err: `listen address "example.com:70000" has port 70000, which is out of range`},
		{desc: "invisible in host", in: "local\u200bhost:443", err: "U+200B ZERO WIDTH SPACE at character 6"},
		{desc: "unicode space around", in: "\u00a0localhost:443", err: "U+00A0 NO-BREAK SPACE at character 1"},
		{desc: "port overflow", in: ":99999999999999999999", err: "out of range"},
		{desc: "bad host", in: "a..b:443", err: `host "a..b" has an empty label`},
		{desc: "underscore host", in: "my_host:443", err: `contains "_"`},
		{desc: "star host", in: "*:443", err: `host "*" is a wildcard; leave the host empty`},
		{desc: "wildcard host", in: "*.example.com:443", err: "is a wildcard"},
		{desc: "bad IPv4", in: "10.0.0.256:443", err: "ends in a numeric label"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ValidateListenAddr(tc.in)
			checkResult(t, tc.in, got, err, tc.want, tc.err)
		})
	}
}

func TestConflicts(t *testing.T) {
	tests := []struct {
		desc, a, b string
		want       bool
	}{
		{"same address", "127.0.0.1:443", "127.0.0.1:443", true},
		{"different ports", ":443", ":80", false},
		{"empty host", ":443", "127.0.0.1:443", true},
		{"empty host second", "127.0.0.1:443", ":443", true},
		{"IPv4 unspecified", "0.0.0.0:443", "192.0.2.1:443", true},
		{"IPv6 unspecified", "[::]:443", "[::1]:443", true},
		{"unspecified across families", "0.0.0.0:443", "[::1]:443", true},
		{"different hosts", "127.0.0.1:443", "192.0.2.1:443", false},
		{"different IPv6 hosts", "[::1]:443", "[2001:db8::1]:443", false},
		{"same name", "localhost:443", "localhost:443", true},
		{"name case and dot", "LocalHost.:443", "localhost:443", true},
		{"names are not resolved", "localhost:443", "127.0.0.1:443", false},
		{"IPv6 spelling", "[2001:db8::1]:443", "[2001:db8:0::1]:443", true},
		{"IPv4-mapped", "[::ffff:192.0.2.1]:443", "192.0.2.1:443", true},
		{"leading zero port", ":0443", "127.0.0.1:443", true},
		{"invalid address", "nonsense", ":443", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Conflicts(tc.a, tc.b); got != tc.want {
				t.Fatalf("Conflicts(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		desc, kind, name string
		err              string
	}{
		{desc: "letters", kind: "listener", name: "web"},
		{desc: "digit first", kind: "listener", name: "1st"},
		{desc: "hyphen and underscore", kind: "mapping id", name: "a-b_c"},
		{desc: "63 characters", kind: "listener", name: label63},

		{desc: "message", kind: "listener", name: "Web!", err: `listener name "Web!" is invalid; use 1-63 lower-case letters, digits, "-" or "_", starting with a letter or digit`},
		{desc: "kind ending in id", kind: "mapping id", name: "X", err: `mapping id "X" is invalid`},
		{desc: "empty", kind: "DNS credential", name: "", err: `DNS credential name "" is invalid`},
		{desc: "too long", kind: "listener", name: label63 + "a", err: "is invalid"},
		{desc: "hyphen first", kind: "listener", name: "-web", err: "is invalid"},
		{desc: "underscore first", kind: "admin token", name: "_web", err: `admin token name "_web" is invalid`},
		{desc: "dot", kind: "listener", name: "a.b", err: "is invalid"},
		{desc: "non-ASCII", kind: "listener", name: "ä", err: "is invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := ValidateName(tc.kind, tc.name)
			checkResult(t, tc.name, "", err, "", tc.err)
		})
	}
}

func BenchmarkNormalizeSNI(b *testing.B) {
	for _, in := range []string{"www.example.com", "www.example.com.", "WWW.Example.com"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizeSNI(in)
			}
		})
	}
}

func BenchmarkWildcardFor(b *testing.B) {
	for _, in := range []string{"www.example.com", "example.com"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				WildcardFor(in)
			}
		})
	}
}

func TestNormalizeServerName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Mgmt.Example.COM.", "mgmt.example.com", true},
		{"mgmt", "mgmt", true},
		{"::1", "::1", true},
		{"0:0::1", "::1", true},
		{"10.0.0.1", "10.0.0.1", true},
		{"", "", false},
		{"*.example.com", "", false},
		{"bad_name", "", false},
		{"example.com:443", "", false},
	}
	for _, tc := range tests {
		got, err := NormalizeServerName(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeServerName(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
