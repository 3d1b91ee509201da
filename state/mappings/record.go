package mappings

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/strictjson"
)

// DefaultKeyType is the key type of an ACME mapping that names none, the
// default of "mapping add --key-type".
const DefaultKeyType = "ec256"

// Record is one mapping as the body of POST /api/v1/mappings gives it, and
// as a line of "mapping export" and "mapping import": the flags of "p2ptls
// mapping add", with the certificate itself (cert_pem, key_pem) instead of
// file names for source manual. Zero fields are left out when written.
type Record struct {
	Listener string   `json:"listener"`
	Hosts    []string `json:"hosts"`
	ID       string   `json:"id,omitempty"`
	Upstream string   `json:"upstream,omitempty"`
	Source   string   `json:"source"` // manual, file, self-signed or acme
	// manual: the chain (leaf first) and key, uploaded.
	CertPEM string `json:"cert_pem,omitempty"`
	KeyPEM  string `json:"key_pem,omitempty"`
	// file: absolute paths on the host that runs p2ptls.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// self-signed: validity in days (default DefaultDays).
	Days int `json:"days,omitempty"`
	// acme
	Challenge     string `json:"challenge,omitempty"`
	DNSCredential string `json:"dns_credential,omitempty"`
	KeyType       string `json:"key_type,omitempty"` // default ec256, as on the command line
	Profile       string `json:"profile,omitempty"`
	// manual, file: accept a certificate outside its validity.
	AllowExpired bool `json:"allow_expired,omitempty"`
}

// Input turns the record into what Add takes, as the command line's mapping
// add does with its flags. Everything else is checked by Add, the one
// validation path of the command line, the API and import.
func (r *Record) Input() (Input, error) {
	m := state.Mapping{
		ID: r.ID, Listener: r.Listener, Hosts: r.Hosts, Upstream: r.Upstream, Source: r.Source,
		CertFile: r.CertFile, KeyFile: r.KeyFile, Days: r.Days,
		Challenge: r.Challenge, DNSCredential: r.DNSCredential, KeyType: r.KeyType, Profile: r.Profile,
	}
	if m.Source == state.SourceACME && m.KeyType == "" {
		m.KeyType = DefaultKeyType
	}
	// The command line resolves relative paths against its working
	// directory; a record has none that its writer could count on.
	for _, p := range []string{r.CertFile, r.KeyFile} {
		if p != "" && !filepath.IsAbs(p) {
			return Input{}, fault.Invalidf("give the absolute path of the file on the management host",
				"%q is not an absolute path", p)
		}
	}
	// As "--allow-expired does not apply to --self-signed" on the command line.
	if r.AllowExpired && r.Source != state.SourceManual && r.Source != state.SourceFile {
		return Input{}, fault.Invalidf("drop allow_expired, or choose source manual or file",
			"allow_expired does not apply to source %q", r.Source)
	}
	// Add's own refusal names the command line's files; a record carries
	// the PEM itself. (File paths on a manual record are Add's to refuse.)
	if r.Source == state.SourceManual && (r.CertPEM == "" || r.KeyPEM == "") && r.CertFile == "" && r.KeyFile == "" {
		return Input{}, fault.Invalidf(`give the chain in "cert_pem" and its key in "key_pem"`, "source manual needs a certificate and its private key")
	}
	in := Input{Mapping: m, AllowExpired: r.AllowExpired}
	if r.CertPEM != "" {
		in.CertPEM = []byte(r.CertPEM)
	}
	if r.KeyPEM != "" {
		in.KeyPEM = []byte(r.KeyPEM)
	}
	return in, nil
}

// hintRecord is the hint of every record that is not one.
const hintRecord = "write one JSON object per line with the fields of POST /api/v1/mappings, as 'p2ptls mapping export' does"

// recordFields are the JSON names of Record's fields.
var recordFields = strictjson.FieldsOf(&Record{})

// decodeRecord parses one line of an import as strictly as the API parses
// a request body: a single JSON object, each key a field of Record spelled
// exactly and given once, values of the field's type, nothing after it.
func decodeRecord(line []byte) (Record, error) {
	if r, ok := decodeRecordFast(line); ok {
		return r, nil
	}
	return decodeRecordStrict(line)
}

// decodeRecordStrict is decodeRecord without its fast path.
func decodeRecordStrict(line []byte) (Record, error) {
	var r Record
	if problem := strictjson.CheckKeys(line, recordFields); problem != "" {
		return r, fault.Invalidf(hintRecord, "invalid JSON: %s", problem)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return r, fault.Invalidf(hintRecord, "invalid JSON: field %q must be a JSON %s, not %s", te.Field, strictjson.Kind(te.Type.Kind()), te.Value)
		case errors.As(err, &te):
			return r, fault.Invalidf(hintRecord, "invalid JSON: a mapping must be a JSON object, not %s", te.Value)
		case errors.As(err, &se):
			return r, fault.Invalidf(hintRecord, "invalid JSON at column %d: %s", se.Offset, strings.TrimPrefix(err.Error(), "json: "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return r, fault.Invalidf(hintRecord, "invalid JSON: the object is not closed on its line")
		}
		return r, fault.Invalidf(hintRecord, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	// "null" decodes into nothing; a mapping is an object.
	if line = bytes.TrimLeft(line, " \t\r"); len(line) == 0 || line[0] != '{' {
		return r, fault.Invalidf(hintRecord, "invalid JSON: a mapping must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, fault.Invalidf(hintRecord, "invalid JSON: data after the JSON object")
	}
	return r, nil
}
