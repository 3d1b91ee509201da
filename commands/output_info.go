package commands

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// appendInfoJSON appends info as an element of the streamed list (see
// printJSONList): byte for byte json.MarshalIndent(info, "  ", "  "),
// which costs five times as much through reflection and a second pass
// to indent, at 100k mappings most of "mapping list --output json".
// TestInfoJSONIsMarshalIndent holds the two together, every field set.
func appendInfoJSON(b []byte, info *mappings.Info) ([]byte, error) {
	const field = "\n    " // prefix + one indent
	b = append(b, '{')
	b = appendJSONField(b, field, "id", info.ID, true)
	b = appendJSONField(b, field, "listener", info.Listener, false)
	b = append(b, ","+field+`"hosts": `...)
	switch {
	case info.Hosts == nil:
		b = append(b, "null"...)
	case len(info.Hosts) == 0:
		b = append(b, "[]"...)
	default:
		b = append(b, '[')
		for i, h := range info.Hosts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, field+"  "...)
			b = appendJSONString(b, h)
		}
		b = append(b, field+"]"...)
	}
	b = appendJSONField(b, field, "source", info.Source, false)
	b = appendJSONField(b, field, "challenge", info.Challenge, false)
	b = appendJSONField(b, field, "dns_credential", info.DNSCredential, false)
	b = appendJSONField(b, field, "profile", info.Profile, false)
	b = appendJSONField(b, field, "key_type", info.KeyType, false)
	b = appendJSONField(b, field, "upstream", info.Upstream, false)
	b = appendJSONField(b, field, "status", info.Status, false)
	var err error
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"not_before", info.NotBefore}, {"not_after", info.NotAfter}, {"next_renewal_at", info.NextRenewalAt}} {
		if b, err = appendJSONTime(b, field, f.key, f.t); err != nil {
			return nil, err
		}
	}
	b = appendJSONField(b, field, "last_error", info.LastError, false)
	b = appendJSONField(b, field, "fingerprint_sha256", info.FingerprintSHA256, false)
	b = appendJSONField(b, field, "cert_file", info.CertFile, false)
	b = appendJSONField(b, field, "key_file", info.KeyFile, false)
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"issued_at", info.IssuedAt}, {"last_attempt_at", info.LastAttemptAt}} {
		if b, err = appendJSONTime(b, field, f.key, f.t); err != nil {
			return nil, err
		}
	}
	b = append(b, ","+field+`"attempts": `...)
	b = strconv.AppendInt(b, int64(info.Attempts), 10)
	if b, err = appendJSONTime(b, field, "retry_at", info.RetryAt); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"ari_window_start", info.ARIWindowStart}, {"ari_window_end", info.ARIWindowEnd}} {
		if b, err = appendJSONTime(b, field, f.key, f.t); err != nil {
			return nil, err
		}
	}
	b = appendJSONField(b, field, "ari_explanation_url", info.ARIExplanationURL, false)
	b = appendJSONField(b, field, "last_error_detail", info.LastErrorDetail, false)
	b = appendJSONField(b, field, "backoff_reason", info.BackoffReason, false)
	b = appendJSONField(b, field, "served_by", info.ServedBy, false)
	return append(b, "\n  }"...), nil
}

func appendJSONField(b []byte, field, key, v string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, field...)
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `": `...)
	return appendJSONString(b, v)
}

// appendJSONTime writes a time as encoding/json does: null for nil, else
// time.Time's MarshalJSON (RFC 3339, refusing years beyond 9999).
func appendJSONTime(b []byte, field, key string, t *time.Time) ([]byte, error) {
	b = append(b, ',')
	b = append(b, field...)
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `": `...)
	if t == nil {
		return append(b, "null"...), nil
	}
	v, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(b, v...), nil
}

// appendJSONString quotes s as encoding/json does by default: <, > and &
// escaped for HTML, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
