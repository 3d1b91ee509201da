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
	tagKeyPair     byte = 3
	tagMeta        byte = 7 // 2: without the ARI fields, 4: without ari_explanation_url and ari_fingerprint_sha256, 5: without the error detail and back-off reason, 6: without reissue
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
		b = state.AppendMemoString(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(c.IPAddresses)))
	for _, ip := range c.IPAddresses {
		b = state.AppendMemoString(b, string(ip))
	}
	return b
}

func decodeCertSummary(v []byte) (CertSummary, error) {
	r := state.NewMemoReader(v)
	var c CertSummary
	if r.Byte() != tagCertSummary {
		return c, errMemoValue
	}
	c.NotBefore = readTime(r)
	c.NotAfter = readTime(r)
	copy(c.Fingerprint[:], r.Take(len(c.Fingerprint)))
	if n := r.Count(); n > 0 {
		c.DNSNames = make([]string, n)
		for i := range c.DNSNames {
			c.DNSNames[i] = r.Str()
		}
	}
	if n := r.Count(); n > 0 {
		c.IPAddresses = make([]net.IP, n)
		for i := range c.IPAddresses {
			c.IPAddresses[i] = net.IP(r.Str())
		}
	}
	return c, r.Done()
}

func encodeMeta(m Meta) []byte {
	b := make([]byte, 0, 128+len(m.LastError)+len(m.LastErrorDetail))
	b = append(b, tagMeta)
	b = state.AppendMemoString(b, m.Source)
	b = appendTime(b, m.IssuedAt)
	b = appendTime(b, m.NotAfter)
	b = state.AppendMemoString(b, m.FingerprintSHA256)
	b = appendTime(b, m.LastAttemptAt)
	b = state.AppendMemoString(b, m.LastError)
	b = appendTime(b, m.NextRenewalAt)
	b = binary.AppendVarint(b, int64(m.Attempts))
	b = appendTime(b, m.RetryAt)
	b = appendTime(b, m.ARI.WindowStart)
	b = appendTime(b, m.ARI.WindowEnd)
	b = appendTime(b, m.ARI.CheckAt)
	b = state.AppendMemoString(b, m.ARI.FingerprintSHA256)
	b = state.AppendMemoString(b, m.ARI.ExplanationURL)
	b = state.AppendMemoString(b, m.LastErrorDetail)
	b = state.AppendMemoString(b, m.BackoffReason)
	return state.AppendMemoString(b, m.Reissue)
}

func decodeMeta(v []byte) (Meta, error) {
	r := state.NewMemoReader(v)
	var m Meta
	if r.Byte() != tagMeta {
		return m, errMemoValue
	}
	m.Source = r.Str()
	m.IssuedAt = readTime(r)
	m.NotAfter = readTime(r)
	m.FingerprintSHA256 = r.Str()
	m.LastAttemptAt = readTime(r)
	m.LastError = r.Str()
	m.NextRenewalAt = readTime(r)
	m.Attempts = int(r.Varint())
	m.RetryAt = readTime(r)
	m.ARI.WindowStart = readTime(r)
	m.ARI.WindowEnd = readTime(r)
	m.ARI.CheckAt = readTime(r)
	m.ARI.FingerprintSHA256 = r.Str()
	m.ARI.ExplanationURL = r.Str()
	m.LastErrorDetail = r.Str()
	m.BackoffReason = r.Str()
	m.Reissue = r.Str()
	return m, r.Done()
}

// A key pair value is the identity of the certificate file the key was
// checked against.
func encodeKeyPair(cert state.FileID) []byte {
	return state.AppendFileID([]byte{tagKeyPair}, cert)
}

func decodeKeyPair(v []byte) (state.FileID, error) {
	r := state.NewMemoReader(v)
	if r.Byte() != tagKeyPair {
		return state.FileID{}, errMemoValue
	}
	id := r.FileID()
	return id, r.Done()
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
		b = state.AppendMemoString(b, name)
		b = binary.AppendVarint(b, int64(off))
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// readTime reads what appendTime wrote.
func readTime(r *state.MemoReader) time.Time {
	var loc *time.Location
	switch r.Byte() {
	case zoneNone:
		return time.Time{}
	case zoneUTC:
		loc = time.UTC
	case zoneLocal:
		loc = time.Local
	case zoneFixed:
		name := r.Str()
		loc = time.FixedZone(name, int(r.Varint()))
	default:
		r.Fail()
		return time.Time{}
	}
	sec := r.Varint()
	nsec := r.Uvarint()
	if nsec >= uint64(time.Second) {
		r.Fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(loc)
}
