package mappings

import (
	"encoding/binary"
	"errors"
	"net"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// The first byte of a value in the certs memo says what it is and in which
// layout: a change of layout takes a new tag, so that an old memo's values
// are misses, not misread.
const (
	tagCertSummary byte = 1
	tagMeta        byte = 2
	tagKeyPair     byte = 3
)

var errMemoValue = errors.New("damaged memo value")

func encodeCertSummary(c CertSummary) []byte {
	b := make([]byte, 0, 64+len(c.Fingerprint)+16*(len(c.DNSNames)+len(c.IPAddresses)))
	b = append(b, tagCertSummary)
	b = appendTime(b, c.NotBefore)
	b = appendTime(b, c.NotAfter)
	b = append(b, c.Fingerprint[:]...)
	b = binary.AppendUvarint(b, uint64(len(c.DNSNames)))
	for _, n := range c.DNSNames {
		b = appendString(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(c.IPAddresses)))
	for _, ip := range c.IPAddresses {
		b = appendString(b, string(ip))
	}
	return b
}

func decodeCertSummary(v []byte) (CertSummary, error) {
	r := valueReader{b: v}
	var c CertSummary
	if r.byte() != tagCertSummary {
		return c, errMemoValue
	}
	c.NotBefore = r.time()
	c.NotAfter = r.time()
	copy(c.Fingerprint[:], r.take(len(c.Fingerprint)))
	if n := r.count(); n > 0 {
		c.DNSNames = make([]string, n)
		for i := range c.DNSNames {
			c.DNSNames[i] = r.string()
		}
	}
	if n := r.count(); n > 0 {
		c.IPAddresses = make([]net.IP, n)
		for i := range c.IPAddresses {
			c.IPAddresses[i] = net.IP(r.string())
		}
	}
	return c, r.done()
}

func encodeMeta(m Meta) []byte {
	b := make([]byte, 0, 128+len(m.LastError))
	b = append(b, tagMeta)
	b = appendString(b, m.Source)
	b = appendTime(b, m.IssuedAt)
	b = appendTime(b, m.NotAfter)
	b = appendString(b, m.FingerprintSHA256)
	b = appendTime(b, m.LastAttemptAt)
	b = appendString(b, m.LastError)
	b = appendTime(b, m.NextRenewalAt)
	b = binary.AppendVarint(b, int64(m.Attempts))
	return appendTime(b, m.RetryAt)
}

func decodeMeta(v []byte) (Meta, error) {
	r := valueReader{b: v}
	var m Meta
	if r.byte() != tagMeta {
		return m, errMemoValue
	}
	m.Source = r.string()
	m.IssuedAt = r.time()
	m.NotAfter = r.time()
	m.FingerprintSHA256 = r.string()
	m.LastAttemptAt = r.time()
	m.LastError = r.string()
	m.NextRenewalAt = r.time()
	m.Attempts = int(r.varint())
	m.RetryAt = r.time()
	return m, r.done()
}

// A key pair value is the identity of the certificate file the key was
// checked against.
func encodeKeyPair(cert state.FileID) []byte {
	b := []byte{tagKeyPair}
	b = binary.AppendUvarint(b, cert.Dev)
	b = binary.AppendUvarint(b, cert.Ino)
	b = binary.AppendVarint(b, cert.Size)
	b = binary.AppendVarint(b, cert.Mtime)
	return binary.AppendVarint(b, cert.Ctime)
}

func decodeKeyPair(v []byte) (state.FileID, error) {
	r := valueReader{b: v}
	if r.byte() != tagKeyPair {
		return state.FileID{}, errMemoValue
	}
	id := state.FileID{Dev: r.uvarint(), Ino: r.uvarint(), Size: r.varint(), Mtime: r.varint(), Ctime: r.varint()}
	return id, r.done()
}

// Time zones: meta.toml's times decode as UTC, as a fixed offset, or
// (without one) as local time; the memo gives back the same.
const (
	zoneNone  byte = iota // the zero time
	zoneUTC               // time.UTC
	zoneLocal             // time.Local
	zoneFixed             // a fixed zone: name and offset follow
)

// appendTime keeps seconds and nanoseconds apart: certificates valid until
// 9999 are beyond UnixNano.
func appendTime(b []byte, t time.Time) []byte {
	switch loc := t.Location(); {
	case t.IsZero() && loc == time.UTC:
		return append(b, zoneNone)
	case loc == time.UTC:
		b = append(b, zoneUTC)
	case loc == time.Local:
		b = append(b, zoneLocal)
	default:
		name, off := t.Zone()
		b = append(b, zoneFixed)
		b = appendString(b, name)
		b = binary.AppendVarint(b, int64(off))
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// valueReader decodes with bounds checks; the first problem sticks.
type valueReader struct {
	b   []byte
	err error
}

func (r *valueReader) fail() {
	r.err, r.b = errMemoValue, nil
}

func (r *valueReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return r.err
}

func (r *valueReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *valueReader) take(n int) []byte {
	if len(r.b) < n {
		r.fail()
		return make([]byte, n)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *valueReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *valueReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count is a length that the rest of the value can hold (every element
// takes at least a byte).
func (r *valueReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *valueReader) string() string {
	n := r.count()
	return string(r.take(n))
}

func (r *valueReader) time() time.Time {
	var loc *time.Location
	switch r.byte() {
	case zoneNone:
		return time.Time{}
	case zoneUTC:
		loc = time.UTC
	case zoneLocal:
		loc = time.Local
	case zoneFixed:
		name := r.string()
		loc = time.FixedZone(name, int(r.varint()))
	default:
		r.fail()
		return time.Time{}
	}
	sec := r.varint()
	nsec := r.uvarint()
	if nsec >= uint64(time.Second) {
		r.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(loc)
}
