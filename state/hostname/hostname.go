// Package hostname validates and normalises the names p2ptls accepts: mapping
// hosts (what a certificate covers), listen addresses and resource names. It
// does no I/O and no DNS lookups, so config validation and the TLS handshake
// can both call it freely.
package hostname

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// DNS limits in octets, without the trailing dot (RFC 1035).
const (
	maxHost  = 253
	maxLabel = 63
)

// Normalize validates a mapping host and returns its canonical form: trimmed,
// lower-case, without a trailing dot and with IDNs as punycode A-labels. A
// host is an exact, fully qualified DNS name or a wildcard over one label,
// "*.example.com", or an IP address (see ip.go for its form and what is
// refused).
func Normalize(host string) (string, error) {
	if canonical(host) || canonicalIP(host) {
		return host, nil
	}
	return normalize(host)
}

// normalize is Normalize for a host that is not canonical.
func normalize(host string) (string, error) {
	s := strings.TrimSuffix(trimSpace(host), ".")
	if s == "" {
		return "", fmt.Errorf("host %q is empty; give a DNS name such as \"example.com\"", host)
	}
	if n, ok, err := normalizeIP(host, s); ok {
		return n, err
	}
	if strings.ContainsAny(s, ":/?#@[]") {
		b := strings.TrimSuffix(strings.TrimPrefix(bareHost(s), "["), "]")
		if isIP(b) {
			return "", fmt.Errorf("host %q includes a scheme, port or path; give only the address, e.g. %q", host, b)
		}
		if b == "" || strings.ContainsAny(b, ":/?#@[]") {
			return "", fmt.Errorf("host %q includes a scheme, port or path; give only the host name", host)
		}
		return "", fmt.Errorf("host %q includes a scheme, port or path; give only the host name, e.g. %q", host, b)
	}
	return checkDNS(host, s, false)
}

// canonical reports, without allocating, whether host is already what
// Normalize returns for it: loading 100k mappings checks every host, and
// nearly all are stored canonical. It accepts only plain ASCII names
// (no A-labels, which need IDNA to check): anything else takes the full
// path. FuzzNormalize checks that Normalize returns every name it accepts
// unchanged.
func canonical(host string) bool {
	name := strings.TrimPrefix(host, "*.")
	if len(host) > maxHost || name == "" {
		return false
	}
	labels, start := 0, 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
			continue
		}
		l := name[start:i]
		if l == "" || len(l) > maxLabel || l[0] == '-' || l[len(l)-1] == '-' || (len(l) >= 4 && l[2:4] == "--") {
			return false
		}
		labels++
		start = i + 1
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	return labels >= 2 && strings.Trim(last, "0123456789") != ""
}

// IsWildcard reports whether the normalised host h is a wildcard.
func IsWildcard(h string) bool { return strings.HasPrefix(h, "*.") }

// WildcardFor returns the wildcard that would cover the normalised name, or
// "" when there is none worth looking up: name is itself a wildcard, or has
// fewer than three labels (a wildcard directly under a TLD is never valid).
func WildcardFor(name string) string {
	i := strings.IndexByte(name, '.')
	if i <= 0 || IsWildcard(name) || strings.IndexByte(name[i+1:], '.') < 0 || ipShaped(name) {
		return ""
	}
	return "*" + name[i:]
}

// Matches reports whether the normalised pattern covers the normalised name:
// equal, or a wildcard standing for exactly the leftmost label of name. No
// wildcard covers an IP address (a certificate's "*.2.3.4" does not cover
// 1.2.3.4 for any client).
func Matches(pattern, name string) bool {
	if pattern == name {
		return true
	}
	i := strings.IndexByte(name, '.')
	return IsWildcard(pattern) && i > 0 && name[i:] == pattern[1:] && !ipShaped(name)
}

// NormalizeSNI puts a TLS server name in the form mapping hosts are stored
// in: ASCII lower-case without a trailing dot. It runs on every handshake, so
// it allocates only when it has to lower-case something; a server name is
// ASCII (RFC 6066), anything else just fails to match.
func NormalizeSNI(serverName string) string {
	s := strings.TrimSuffix(serverName, ".")
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			var b strings.Builder
			b.Grow(len(s))
			b.WriteString(s[:i])
			for ; i < len(s); i++ {
				c := s[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b.WriteByte(c)
			}
			return b.String()
		}
	}
	return s
}

// ValidateListenAddr validates a HOST:PORT address for net.Listen and returns
// it normalised. HOST may be empty (all interfaces), an IP literal (IPv6 in
// brackets) or a DNS name, which may be a single label such as "localhost".
func ValidateListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(trimSpace(addr))
	if err != nil {
		return "", fmt.Errorf("listen address %q is not HOST:PORT; write it like \":443\", \"127.0.0.1:443\" or \"[::1]:443\"", addr)
	}
	switch n, err := strconv.Atoi(port); {
	case port == "":
		return "", fmt.Errorf("listen address %q has no port; add one, e.g. %q", addr, trimSpace(addr)+"443")
	case strings.Trim(port, "0123456789") != "": // Atoi would accept a sign
		return "", fmt.Errorf("listen address %q has port %q, which is not a number; give the port number, e.g. 443 rather than \"https\"", addr, port)
	case err == nil && n == 0:
		return "", fmt.Errorf("listen address %q has port 0; a listener needs a fixed port, so give one between 1 and 65535", addr)
	case err != nil || n > 65535:
		return "", fmt.Errorf("listen address %q has port %s, which is out of range; give one between 1 and 65535", addr, port)
	default:
		port = strconv.Itoa(n) // drops leading zeros
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else if host != "" {
		if host, err = checkDNS(host, strings.TrimSuffix(host, "."), true); err != nil {
			return "", err
		}
	}
	return net.JoinHostPort(host, port), nil
}

// Conflicts reports whether two valid listen addresses would collide on bind:
// the same port, and the same host or a host meaning all interfaces (empty,
// 0.0.0.0 or ::). Names are not resolved, so "localhost:443" does not
// conflict with "127.0.0.1:443".
func Conflicts(a, b string) bool {
	ha, pa, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(b)
	if err != nil || !samePort(pa, pb) {
		return false
	}
	return allInterfaces(ha) || allInterfaces(hb) || sameHost(ha, hb)
}

// ValidateName checks the name of a resource (listener, mapping id, DNS
// credential, admin token): 1-63 characters of [a-z0-9_-], starting with a
// letter or digit. kind names the resource in the message, e.g. "listener";
// " name" is appended unless kind already ends in "name" or "id".
func ValidateName(kind, name string) error {
	if validName(name) {
		return nil
	}
	if !strings.HasSuffix(kind, "name") && !strings.HasSuffix(kind, " id") {
		kind += " name"
	}
	return fmt.Errorf("%s %q is invalid; use 1-63 lower-case letters, digits, \"-\" or \"_\", starting with a letter or digit", kind, name)
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > maxLabel {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLetterDigit(c) && (i == 0 || c != '-' && c != '_') {
			return false
		}
	}
	return true
}

// checkDNS validates and normalises the DNS name s, the trimmed form of
// input without its trailing dot. Listen addresses allow a single label
// ("localhost") but no wildcard; mapping hosts the other way round.
func checkDNS(input, s string, listen bool) (string, error) {
	s = strings.ToLower(s)
	name, wild := strings.CutPrefix(s, "*.")
	if s == "*" {
		name, wild = "", true
	}
	if listen && (wild || strings.Contains(name, "*")) {
		return "", fmt.Errorf("host %q is a wildcard; leave the host empty, e.g. \":443\", to listen on all interfaces", input)
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("host %q has a wildcard that is not the whole leftmost label; use the form \"*.example.com\"", input)
	}
	if !isASCII(name) {
		// IDNA mapping (UTS 46) silently drops some invisible code points
		// (U+200B, U+00AD, U+2060, variation selectors …), so a name that
		// looks like "shop.example.com" could be stored as another. They
		// are refused with their place instead, before the mapping runs.
		if err := checkInvisible(input); err != nil {
			return "", err
		}
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("host %q is not a valid internationalised domain name (%v); check its spelling", input, err)
		}
		name = a
	}
	if wild && strings.IndexByte(name, '.') < 0 {
		return "", fmt.Errorf("wildcard %q needs at least two labels after \"*.\"; use the form \"*.example.com\"", input)
	}
	full := name
	if wild {
		full = "*." + name
	}
	if len(full) > maxHost {
		return "", fmt.Errorf("host %q is %d octets long; shorten it to at most %d", input, len(full), maxHost)
	}
	var last string
	for i, l := range strings.Split(name, ".") {
		if err := checkLabel(input, l, i); err != nil {
			return "", err
		}
		last = l
	}
	// Each A-label may decode alone and the name still break the IDNA
	// rules across labels (bidi: "xn--0xb.0a"), which CAs and clients check.
	if strings.Contains(name, "xn--") {
		if _, err := idna.Lookup.ToUnicode(name); err != nil {
			return "", fmt.Errorf("host %q is not a valid internationalised domain name (%v); check its spelling", input, err)
		}
	}
	if strings.Trim(last, "0123456789") == "" {
		return "", fmt.Errorf("host %q ends in a numeric label, so it is neither a DNS name nor an IP address; check the address or use a DNS name", input)
	}
	if !listen && !wild && last == name {
		return "", fmt.Errorf("host %q is a single label; a public certificate needs a fully qualified name, e.g. %q", input, name+".example.com")
	}
	return full, nil
}

// checkLabel checks the i-th label l of an ASCII, lower-case name.
func checkLabel(input, l string, i int) error {
	switch {
	case l == "" && i == 0:
		return fmt.Errorf("host %q starts with a dot; remove the leading dot", input)
	case l == "":
		return fmt.Errorf("host %q has an empty label; remove the doubled dot", input)
	case len(l) > maxLabel:
		return fmt.Errorf("host %q has a label of %d octets; shorten each label to at most %d", input, len(l), maxLabel)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("host %q has label %q starting or ending with a hyphen; remove that hyphen", input, l)
	}
	for j := 0; j < len(l); j++ {
		if c := l[j]; !isLetterDigit(c) && c != '-' {
			return fmt.Errorf("host %q contains %q, which a host name cannot; use only letters, digits, \"-\" and \".\"", input, string(c))
		}
	}
	if strings.HasPrefix(l, "xn--") {
		// An A-label typed in ASCII must still decode to a valid U-label.
		if _, err := idna.Lookup.ToUnicode(l); err != nil {
			return fmt.Errorf("host %q has label %q, which is not valid punycode; write that label in Unicode instead", input, l)
		}
	} else if len(l) >= 4 && l[2:4] == "--" {
		// Reserved for encodings like punycode (RFC 5891); CAs refuse them.
		return fmt.Errorf("host %q has label %q with \"--\" in the third and fourth place, which is reserved; change that label", input, l)
	}
	return nil
}

// invisibleNames names the code points people most often paste by accident.
var invisibleNames = map[rune]string{
	0x00A0: "NO-BREAK SPACE",
	0x00AD: "SOFT HYPHEN",
	0x034F: "COMBINING GRAPHEME JOINER",
	0x061C: "ARABIC LETTER MARK",
	0x180E: "MONGOLIAN VOWEL SEPARATOR",
	0x200B: "ZERO WIDTH SPACE",
	0x200C: "ZERO WIDTH NON-JOINER",
	0x200D: "ZERO WIDTH JOINER",
	0x200E: "LEFT-TO-RIGHT MARK",
	0x200F: "RIGHT-TO-LEFT MARK",
	0x202A: "LEFT-TO-RIGHT EMBEDDING",
	0x202B: "RIGHT-TO-LEFT EMBEDDING",
	0x202C: "POP DIRECTIONAL FORMATTING",
	0x202D: "LEFT-TO-RIGHT OVERRIDE",
	0x202E: "RIGHT-TO-LEFT OVERRIDE",
	0x2060: "WORD JOINER",
	0x2066: "LEFT-TO-RIGHT ISOLATE",
	0x2067: "RIGHT-TO-LEFT ISOLATE",
	0x2068: "FIRST STRONG ISOLATE",
	0x2069: "POP DIRECTIONAL ISOLATE",
	0x3000: "IDEOGRAPHIC SPACE",
	0x3164: "HANGUL FILLER",
	0xFEFF: "ZERO WIDTH NO-BREAK SPACE (byte order mark)",
}

// Invisible reports whether r has no place in a host name although IDNA
// might accept or drop it: format characters (zero-width, bidi controls,
// soft hyphen), controls, spaces, private use and surrogates, variation
// selectors and the other default-ignorable code points. ASCII is left to
// checkLabel, which names the character.
func Invisible(r rune) bool {
	return r >= utf8.RuneSelf && (r == utf8.RuneError ||
		unicode.In(r, unicode.Cf, unicode.Cc, unicode.Z, unicode.Co, unicode.Cs,
			unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point))
}

// checkInvisible refuses input when it is not UTF-8 or holds an Invisible
// code point, naming the code point and its place (counted in characters
// from 1, as an editor does).
func checkInvisible(input string) error {
	if !utf8.ValidString(input) {
		return fmt.Errorf("host %q is not valid UTF-8; type the name again", input)
	}
	pos := 0
	for _, r := range input {
		pos++
		if !Invisible(r) {
			continue
		}
		what := invisibleNames[r]
		if what == "" {
			what = "an invisible, space or formatting character"
		}
		return fmt.Errorf("host %q contains U+%04X %s at character %d, which IDNA would drop or refuse; type the name again without it", input, r, what, pos)
	}
	return nil
}

func isLetterDigit(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isIP reports whether s is an IP literal, bracketed or not.
func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	return err == nil
}

// bareHost guesses the host in a URL or HOST:PORT, to suggest it in an error.
func bareHost(s string) string {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	return s
}

func samePort(a, b string) bool {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return na == nb
}

func allInterfaces(host string) bool {
	ip, err := netip.ParseAddr(host)
	return host == "" || err == nil && ip.IsUnspecified()
}

func sameHost(a, b string) bool {
	ipA, errA := netip.ParseAddr(a)
	ipB, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return ipA.Unmap() == ipB.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// NormalizeServerName validates a name a server certificate may carry for a
// private deployment: an IP address (returned in canonical form) or a DNS
// name, which may be a single label such as "localhost" or "mgmt", but not a
// wildcard.
func NormalizeServerName(h string) (string, error) {
	h = trimSpace(h)
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.String(), nil
	}
	if h == "" {
		return "", fmt.Errorf("host name is empty; give a DNS name or an IP address")
	}
	return checkDNS(h, strings.TrimSuffix(h, "."), true)
}

// trimSpace drops surrounding ASCII white space, what a shell or a pasted
// line adds. Unicode spaces (U+00A0, U+3000 …) are left for checkInvisible
// to refuse: strings.TrimSpace would drop them without a word.
func trimSpace(s string) string { return strings.Trim(s, " \t\r\n\v\f") }
