package hostname

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// FuzzNormalize checks the properties every accepted host must have:
// normalising is idempotent, the result is ASCII within the DNS limits,
// re-validates as itself, is what SNI normalisation leaves alone, and
// decodes to Unicode without a single invisible code point.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"example.com", "*.Example.COM.", "bücher.example", "ｅｘａｍｐｌｅ。com", "xn--bcher-kva.example",
		"sh\u200bop.example.com", "a\u00adb.example.com", "\u202eexample.com", "a\u0301.example.com",
		"192.0.2.1", "[::1]", "https://user@example.com:8443/x", "a..b", "*.*.example.com",
		"ab--c.example.com", "x.123", "-a.example.com", "*.com", "a.b", "xn--a.example",
		"::0001", "2001:DB8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "10.0.0.0/8", "010.1.2.3", "*.1.2.3.4", "127.1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if canonical(in) || canonicalIP(in) {
			if n, err := normalize(in); err != nil || n != in {
				t.Fatalf("canonical(%q), but the full check gives %q, %v", in, n, err)
			}
		}
		n, err := Normalize(in)
		if err != nil {
			return
		}
		if ip, ok := ParseIP(n); ok {
			// An IP host is the address in netip's form: RFC 5952, no
			// zone, never IPv4-mapped.
			if ip.String() != n || ip.Zone() != "" || ip.Is4In6() || !IsIP(n) {
				t.Fatalf("Normalize(%q) = %q, which is not an address in its stored form", in, n)
			}
			if again, err := Normalize(n); err != nil || again != n {
				t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, n, n, again, err)
			}
			return
		}
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, n, n, again, err)
		}
		if len(n) > maxHost || !isASCII(n) {
			t.Fatalf("Normalize(%q) = %q: not ASCII or longer than %d", in, n, maxHost)
		}
		if NormalizeSNI(n) != n {
			t.Fatalf("Normalize(%q) = %q, which NormalizeSNI changes to %q", in, n, NormalizeSNI(n))
		}
		u, err := idna.Lookup.ToUnicode(strings.TrimPrefix(n, "*."))
		if err != nil {
			t.Fatalf("Normalize(%q) = %q, which does not decode: %v", in, n, err)
		}
		for i, r := range u {
			if Invisible(r) || r == utf8.RuneError {
				t.Fatalf("Normalize(%q) = %q decodes to %q, with U+%04X at byte %d", in, n, u, r, i)
			}
		}
		// What the input held beyond ASCII must not have vanished without
		// a trace: every invisible code point is refused, so none was in.
		for _, r := range in {
			if Invisible(r) {
				t.Fatalf("Normalize(%q) accepted U+%04X", in, r)
			}
		}
	})
}

// FuzzValidateListenAddr: an accepted address is stable under validation.
func FuzzValidateListenAddr(f *testing.F) {
	for _, s := range []string{":443", "127.0.0.1:8443", "[::1]:443", " Web.Example.COM.:0443 ", "bücher.example:443", "a\u200bb:443", "[fe80::1%eth0]:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ValidateListenAddr(in)
		if err != nil {
			return
		}
		if again, err := ValidateListenAddr(out); err != nil || again != out {
			t.Fatalf("ValidateListenAddr(%q) = %q, but again gives %q, %v", in, out, again, err)
		}
	})
}
