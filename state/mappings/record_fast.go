package mappings

// decodeRecordFast decodes line when it has the plain shape that export
// writes for every mapping without a certificate of its own (self-signed,
// acme, file): one object, each key a field of Record given once, string
// values of printable ASCII without escapes, days a small integer without
// a fraction or exponent, allow_expired true or false, hosts an array of
// such strings, whitespace only around them. It reports ok false for
// anything else, which decodeRecord then decodes (and refuses) as
// encoding/json does: the fast path either gives exactly what that would
// give or nothing (FuzzDecodeRecordFast). It reads each line once, where
// the strict path reads it twice (the key check and the decoder), about
// ten times slower, which is most of what decoding costs an import of 10k
// self-signed lines.
func decodeRecordFast(line []byte) (r Record, ok bool) {
	p := fastParser{b: line}
	// Before the object, as decodeRecord's own check, not a newline
	// (which no line holds anyway).
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
	if !p.take('{') {
		return Record{}, false
	}
	var seen uint32 // a bit per field, so that a key given twice is left to the strict path
	p.space()
	if p.take('}') {
		return r, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return Record{}, false
		}
		p.space()
		if !p.take(':') {
			return Record{}, false
		}
		p.space()
		bit, ok := p.value(&r, key)
		if !ok || seen&bit != 0 {
			return Record{}, false
		}
		seen |= bit
		p.space()
		if p.take('}') {
			return r, p.end()
		}
		if !p.take(',') {
			return Record{}, false
		}
	}
}

type fastParser struct {
	b []byte
	i int
}

// space skips JSON whitespace.
func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) take(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string of printable ASCII without escapes, as a view of the
// line.
func (p *fastParser) str() ([]byte, bool) {
	if !p.take('"') {
		return nil, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// value reads the value of field key into r; bit is the field's.
func (p *fastParser) value(r *Record, key []byte) (bit uint32, ok bool) {
	var dst *string
	switch string(key) {
	case "listener":
		dst, bit = &r.Listener, 1<<0
	case "id":
		dst, bit = &r.ID, 1<<1
	case "upstream":
		dst, bit = &r.Upstream, 1<<2
	case "source":
		dst, bit = &r.Source, 1<<3
	case "cert_pem":
		dst, bit = &r.CertPEM, 1<<4
	case "key_pem":
		dst, bit = &r.KeyPEM, 1<<5
	case "cert_file":
		dst, bit = &r.CertFile, 1<<6
	case "key_file":
		dst, bit = &r.KeyFile, 1<<7
	case "challenge":
		dst, bit = &r.Challenge, 1<<8
	case "dns_credential":
		dst, bit = &r.DNSCredential, 1<<9
	case "key_type":
		dst, bit = &r.KeyType, 1<<10
	case "profile":
		dst, bit = &r.Profile, 1<<11
	case "hosts":
		hosts, ok := p.strings()
		r.Hosts = hosts
		return 1 << 12, ok
	case "days":
		n, ok := p.int()
		r.Days = n
		return 1 << 13, ok
	case "allow_expired":
		switch {
		case p.word("true"):
			r.AllowExpired = true
		case p.word("false"):
			r.AllowExpired = false
		default:
			return 0, false
		}
		return 1 << 14, true
	default:
		return 0, false
	}
	s, ok := p.str()
	*dst = string(s)
	return bit, ok
}

// strings reads an array of strings; [] is an empty slice, not nil, as
// encoding/json makes it.
func (p *fastParser) strings() ([]string, bool) {
	if !p.take('[') {
		return nil, false
	}
	out := []string{}
	p.space()
	if p.take(']') {
		return out, true
	}
	for {
		p.space()
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, string(s))
		p.space()
		if p.take(']') {
			return out, true
		}
		if !p.take(',') {
			return nil, false
		}
	}
}

// int reads an integer as JSON writes one (no leading zero, no fraction or
// exponent) of at most 9 digits, inside int on every platform.
func (p *fastParser) int() (int, bool) {
	neg := p.take('-')
	start := p.i
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 9 || digits > 1 && p.b[start] == '0' {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// word reads the literal w (what follows is the caller's to check: only
// whitespace, a comma or the end of the object).
func (p *fastParser) word(w string) bool {
	if len(p.b)-p.i < len(w) || string(p.b[p.i:p.i+len(w)]) != w {
		return false
	}
	p.i += len(w)
	return true
}
