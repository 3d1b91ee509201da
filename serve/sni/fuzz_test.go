package sni

import (
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/hostname"
)

// refLower lower-cases ASCII letters and nothing else, as server names are
// ASCII (RFC 6066) and a non-ASCII byte must simply fail to match.
func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// refAccepts is which hosts Add takes: already lower-case, no trailing dot,
// something after an optional "*." and no other "*".
func refAccepts(h string) bool {
	rest := strings.TrimPrefix(h, "*.")
	return refLower(h) == h && !strings.HasSuffix(h, ".") && rest != "" && !strings.Contains(rest, "*")
}

// refSelect is the selection rule written as plainly as possible: the exact
// host if usable, else a wildcard whose part after "*." is what follows
// the name's non-empty first label, if usable, else nothing.
func refSelect(hosts []string, usable map[string]bool, serverName string) (host string, ok, skipped bool) {
	name := strings.TrimSuffix(refLower(serverName), ".")
	for _, h := range hosts {
		if !strings.HasPrefix(h, "*.") && h == name {
			if usable[h] {
				return h, true, false
			}
			skipped = true
		}
	}
	first, rest, dotted := strings.Cut(name, ".")
	// No wildcard covers an IP-shaped name: one with a ":" or whose last
	// label is all digits.
	last := name[strings.LastIndex(name, ".")+1:]
	ipShaped := strings.Contains(name, ":") || (last != "" && strings.Trim(last, "0123456789") == "")
	for _, h := range hosts {
		if strings.HasPrefix(h, "*.") && dotted && first != "" && !ipShaped && h[2:] == rest && usable[h] {
			return h, true, skipped
		}
	}
	return "", false, skipped
}

// FuzzLookup checks Index.Add, Lookup and Select against the reference over
// a set of hosts (comma-separated), which of them are usable (bit i of
// mask for the i-th host) and a server name.
func FuzzLookup(f *testing.F) {
	f.Add("a.example.com,*.example.com", uint64(3), "A.Example.COM.")
	f.Add("dns.example.com,*.example.com", uint64(2), "dns.example.com")
	f.Add("*.example.com", uint64(1), "*.example.com")
	f.Add("a.example.com", uint64(1), ".example.com")
	f.Fuzz(func(t *testing.T, list string, mask uint64, serverName string) {
		hosts := strings.Split(list, ",")
		if len(hosts) > 64 {
			hosts = hosts[:64]
		}
		b := NewBuilder[string](len(hosts))
		// Half the inputs keep no copy of the hosts, and half of those
		// keep their values by Refs.
		if len(serverName)%2 == 1 {
			var refs Refs[string]
			if len(serverName)%4 == 3 {
				refs = newListRefs[string]()
			}
			b = NewBuilderOn(len(hosts), func(h string) string { return h }, refs)
		}
		usable := map[string]bool{}
		var accepted []string
		seen := map[string]bool{}
		for i, h := range hosts {
			want := refAccepts(h) && !seen[h]
			err := b.Add(h, h)
			if (err == nil) != want {
				t.Fatalf("Add(%q) = %v; the reference accepts it: %v", h, err, want)
			}
			if err == nil {
				seen[h] = true
				accepted = append(accepted, h)
				usable[h] = mask&(1<<i) != 0
			}
		}
		x := b.Build()
		if x.Len() != len(accepted) {
			t.Fatalf("Len = %d, want %d", x.Len(), len(accepted))
		}
		calls := 0
		got, ok, skipped := x.Select(serverName, func(h string) bool { calls++; return usable[h] })
		want, wantOK, wantSkipped := refSelect(accepted, usable, serverName)
		if got != want || ok != wantOK || skipped != wantSkipped {
			t.Fatalf("Select(%q) over %q = %q, %v, %v; reference %q, %v, %v", serverName, accepted, got, ok, skipped, want, wantOK, wantSkipped)
		}
		if calls > 2 {
			t.Fatalf("Select called usable %d times", calls)
		}
		if ok && !hostname.Matches(got, hostname.NormalizeSNI(serverName)) {
			t.Fatalf("Select(%q) = %q, which hostname.Matches rejects", serverName, got)
		}
		all := map[string]bool{}
		for _, h := range accepted {
			all[h] = true
		}
		got, ok = x.Lookup(serverName)
		want, wantOK, _ = refSelect(accepted, all, serverName)
		if got != want || ok != wantOK {
			t.Fatalf("Lookup(%q) over %q = %q, %v; reference %q, %v", serverName, accepted, got, ok, want, wantOK)
		}
	})
}
