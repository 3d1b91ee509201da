// Package cftest is an in-memory emulator of the Cloudflare API v4 for tests.
//
// It serves, over plain HTTP on 127.0.0.1, the endpoints that lego's
// Cloudflare DNS provider uses (zone lookup by name, DNS record creation and
// deletion) plus the ones a credential check needs (token verification, zone
// listing, DNS record listing). Authentication is by API token
// ("Authorization: Bearer TOKEN") only; every token has a fixed set of
// permissions (Perms).
//
// Responses use Cloudflare's envelope
// {"success":…,"errors":[…],"messages":[…],"result":…} and Cloudflare's error
// codes where known:
//
//   - missing or malformed Authorization header: 400, code 6003 "Invalid request
//     headers" (error_chain 6111)
//   - unknown token: 401, code 1000 "Invalid API Token" on /user/tokens/verify;
//     403, code 9109 "Invalid access token" elsewhere
//   - token lacking the permission an endpoint needs: 403, code 10000
//     "Authentication error"
//   - unknown zone id: 404, code 7003; unknown record id: 404, code 81044
//   - identical record (same type, name and content): 400, code 81058
//   - record name outside its zone: 400, code 9005 (emulator-specific message)
//   - unknown route: 404, code 7000 "No route for that URI"
//
// Zone and record ids are random 32-digit hex strings, as on Cloudflare.
package cftest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// APIPath is the path prefix of the emulated API; Server.URL ends with it.
const APIPath = "/client/v4"

// Perms are the permissions of an API token.
type Perms struct {
	ZoneRead bool // Zone:Zone:Read — GET /zones, GET /zones/{id}
	DNSEdit  bool // Zone:DNS:Edit — create, delete and list DNS records
}

// Options configure a Server.
type Options struct {
	// Zones the account holds, e.g. "example.test" (case-insensitive, a
	// trailing dot is ignored).
	Zones []string
	// Tokens maps an API token to its permissions; any other token is invalid.
	Tokens map[string]Perms
	// OnTXT is called when a TXT record is created (present=true) or deleted
	// (present=false), with the FQDN without trailing dot (lower case) and the
	// value with the surrounding double quotes (which lego adds) removed.
	//
	// Calls are serialized and made in the order of the changes, after the
	// change is visible through Server.TXT, and before the API call that caused
	// the change answers. OnTXT may call Server.TXT and Server.Requests.
	OnTXT func(fqdn, value string, present bool)
}

// Server is a running emulator. It is closed by the t.Cleanup of New.
type Server struct {
	// URL is the API base URL, http://127.0.0.1:PORT/client/v4: what lego's
	// cloudflare.Config.BaseURL expects.
	URL string

	opts     Options
	srv      *httptest.Server
	requests atomic.Int64

	hookMu sync.Mutex // serializes OnTXT calls, taken before mu

	mu      sync.Mutex
	zones   []*zone // in Options order
	records []*record
}

type zone struct {
	id   string
	name string
}

type record struct {
	id       string
	zone     *zone
	typ      string
	name     string
	content  string
	ttl      int
	comment  string
	created  time.Time
	modified time.Time
}

// New starts an emulator on 127.0.0.1. It is closed by t.Cleanup.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{opts: o}
	seen := map[string]bool{}
	for _, z := range o.Zones {
		name := normName(z)
		if name == "" {
			t.Fatalf("cftest: empty zone name in Options.Zones")
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		s.zones = append(s.zones, &zone{id: newID(), name: name})
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPath+"/user/tokens/verify", s.handleVerify)
	mux.HandleFunc("GET "+APIPath+"/zones", s.handleListZones)
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}", s.handleGetZone)
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}/dns_records", s.handleListRecords)
	mux.HandleFunc("POST "+APIPath+"/zones/{zone}/dns_records", s.handleCreateRecord)
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}/dns_records/{record}", s.handleGetRecord)
	mux.HandleFunc("DELETE "+APIPath+"/zones/{zone}/dns_records/{record}", s.handleDeleteRecord)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Code: 7000, Message: "No route for that URI"})
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cftest: listen on 127.0.0.1: %v", err)
	}
	s.srv = &httptest.Server{
		Listener: ln,
		Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			mux.ServeHTTP(w, r)
		})},
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL + APIPath
	return s
}

// TXT returns the current values of the TXT records named fqdn (with or
// without trailing dot, case-insensitive), surrounding quotes removed, in
// creation order. It returns nil when there are none.
func (s *Server) TXT(fqdn string) []string {
	name := normName(fqdn)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.records {
		if r.typ == "TXT" && r.name == name {
			out = append(out, unquote(r.content))
		}
	}
	return out
}

// Requests returns the number of HTTP requests the emulator has received
// (every API call, successful or not).
func (s *Server) Requests() int { return int(s.requests.Load()) }

// ZoneID returns the id of a zone the account holds, or "" if none.
func (s *Server) ZoneID(name string) string {
	if z := s.zoneByName(normName(name)); z != nil {
		return z.id
	}
	return ""
}

// ---- handlers ----

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	if !ok {
		writeBadAuthHeader(w)
		return
	}
	if _, ok := s.opts.Tokens[tok]; !ok {
		writeError(w, http.StatusUnauthorized, apiError{Code: 1000, Message: "Invalid API Token"})
		return
	}
	writeResult(w, http.StatusOK, map[string]any{
		"id":     tokenID(tok),
		"status": "active",
	}, nil, apiError{Code: 10000, Message: "This API Token is valid and active"})
}

func (s *Server) handleListZones(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	if !perms.ZoneRead {
		writeAuthError(w)
		return
	}
	q := r.URL.Query()
	name := normName(q.Get("name"))
	var out []any
	for _, z := range s.zones {
		if q.Has("name") && z.name != name {
			continue
		}
		out = append(out, zoneJSON(z, perms))
	}
	writeList(w, r, out)
}

func (s *Server) handleGetZone(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	z := s.zoneOr404(w, r)
	if z == nil {
		return
	}
	if !perms.ZoneRead {
		writeAuthError(w)
		return
	}
	writeResult(w, http.StatusOK, zoneJSON(z, perms), nil)
}

func (s *Server) handleListRecords(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	z := s.zoneOr404(w, r)
	if z == nil {
		return
	}
	if !perms.DNSEdit {
		writeAuthError(w)
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	var out []any
	for _, rec := range s.records {
		if rec.zone != z {
			continue
		}
		if q.Has("type") && !strings.EqualFold(q.Get("type"), rec.typ) {
			continue
		}
		if q.Has("name") && normName(q.Get("name")) != rec.name {
			continue
		}
		if q.Has("content") && q.Get("content") != rec.content {
			continue
		}
		out = append(out, recordJSON(rec))
	}
	s.mu.Unlock()
	writeList(w, r, out)
}

func (s *Server) handleGetRecord(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	z := s.zoneOr404(w, r)
	if z == nil {
		return
	}
	if !perms.DNSEdit {
		writeAuthError(w)
		return
	}
	s.mu.Lock()
	var found any
	for _, rec := range s.records {
		if rec.zone == z && rec.id == r.PathValue("record") {
			found = recordJSON(rec)
		}
	}
	s.mu.Unlock()
	if found == nil {
		writeError(w, http.StatusNotFound, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	writeResult(w, http.StatusOK, found, nil)
}

// recordInput is the body of a record creation.
type recordInput struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
	TTL     *int   `json:"ttl"`
	Comment string `json:"comment"`
}

func (s *Server) handleCreateRecord(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	z := s.zoneOr404(w, r)
	if z == nil {
		return
	}
	if !perms.DNSEdit {
		writeAuthError(w)
		return
	}
	var in recordInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: 9207, Message: "Request body is invalid: " + err.Error()})
		return
	}
	typ := strings.ToUpper(strings.TrimSpace(in.Type))
	name := normName(in.Name)
	if name == "@" {
		name = z.name
	}
	ttl := 1
	if in.TTL != nil {
		ttl = *in.TTL
	}
	switch {
	case typ == "":
		writeError(w, http.StatusBadRequest, apiError{Code: 9004, Message: "DNS record type is required."})
		return
	case name == "":
		writeError(w, http.StatusBadRequest, apiError{Code: 9007, Message: "DNS record name is required."})
		return
	case name != z.name && !strings.HasSuffix(name, "."+z.name):
		writeError(w, http.StatusBadRequest, apiError{Code: 9005,
			Message: fmt.Sprintf("DNS record name %q is not in zone %q.", name, z.name)})
		return
	case in.Content == "":
		writeError(w, http.StatusBadRequest, apiError{Code: 9021, Message: "DNS record content is required."})
		return
	case ttl != 1 && (ttl < 60 || ttl > 86400):
		writeError(w, http.StatusBadRequest, apiError{Code: 9021,
			Message: fmt.Sprintf("Invalid TTL %d. Must be between 60 and 86400 seconds, or 1 for Automatic.", ttl)})
		return
	}

	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.mu.Lock()
	for _, rec := range s.records {
		if rec.zone == z && rec.typ == typ && rec.name == name && rec.content == in.Content {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, apiError{Code: 81058, Message: "An identical record already exists."})
			return
		}
	}
	now := time.Now().UTC()
	rec := &record{id: newID(), zone: z, typ: typ, name: name, content: in.Content,
		ttl: ttl, comment: in.Comment, created: now, modified: now}
	s.records = append(s.records, rec)
	out := recordJSON(rec)
	s.mu.Unlock()

	if typ == "TXT" && s.opts.OnTXT != nil {
		s.opts.OnTXT(name, unquote(in.Content), true)
	}
	writeResult(w, http.StatusOK, out, nil)
}

func (s *Server) handleDeleteRecord(w http.ResponseWriter, r *http.Request) {
	perms, ok := s.auth(w, r)
	if !ok {
		return
	}
	z := s.zoneOr404(w, r)
	if z == nil {
		return
	}
	if !perms.DNSEdit {
		writeAuthError(w)
		return
	}
	id := r.PathValue("record")

	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.mu.Lock()
	var del *record
	for i, rec := range s.records {
		if rec.zone == z && rec.id == id {
			del = rec
			s.records = append(s.records[:i:i], s.records[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if del == nil {
		writeError(w, http.StatusNotFound, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	if del.typ == "TXT" && s.opts.OnTXT != nil {
		s.opts.OnTXT(del.name, unquote(del.content), false)
	}
	writeResult(w, http.StatusOK, map[string]string{"id": id}, nil)
}

// ---- helpers ----

// auth checks the bearer token and writes the error response if it is not
// valid.
func (s *Server) auth(w http.ResponseWriter, r *http.Request) (Perms, bool) {
	tok, ok := bearer(r)
	if !ok {
		writeBadAuthHeader(w)
		return Perms{}, false
	}
	p, ok := s.opts.Tokens[tok]
	if !ok {
		writeError(w, http.StatusForbidden, apiError{Code: 9109, Message: "Invalid access token"})
		return Perms{}, false
	}
	return p, true
}

func (s *Server) zoneByName(name string) *zone {
	for _, z := range s.zones {
		if z.name == name {
			return z
		}
	}
	return nil
}

func (s *Server) zoneOr404(w http.ResponseWriter, r *http.Request) *zone {
	id := r.PathValue("zone")
	for _, z := range s.zones {
		if z.id == id {
			return z
		}
	}
	writeError(w, http.StatusNotFound, apiError{Code: 7003,
		Message: fmt.Sprintf("Could not route to %s, perhaps your object identifier is invalid?",
			strings.TrimPrefix(r.URL.Path, APIPath))})
	return nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

type apiError struct {
	Code       int        `json:"code"`
	Message    string     `json:"message"`
	ErrorChain []apiError `json:"error_chain,omitempty"`
}

type envelope struct {
	Success    bool       `json:"success"`
	Errors     []apiError `json:"errors"`
	Messages   []apiError `json:"messages"`
	Result     any        `json:"result"`
	ResultInfo any        `json:"result_info,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, envelope{Success: false, Errors: []apiError{e}, Messages: []apiError{}})
}

func writeBadAuthHeader(w http.ResponseWriter) {
	writeError(w, http.StatusBadRequest, apiError{Code: 6003, Message: "Invalid request headers",
		ErrorChain: []apiError{{Code: 6111, Message: "Invalid format for Authorization header"}}})
}

func writeAuthError(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, apiError{Code: 10000, Message: "Authentication error"})
}

func writeResult(w http.ResponseWriter, status int, result, info any, msgs ...apiError) {
	if msgs == nil {
		msgs = []apiError{}
	}
	writeJSON(w, status, envelope{Success: true, Errors: []apiError{}, Messages: msgs, Result: result, ResultInfo: info})
}

func writeList(w http.ResponseWriter, r *http.Request, items []any) {
	if items == nil {
		items = []any{}
	}
	perPage := 20
	if v, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && v > 0 {
		perPage = v
	}
	pages := (len(items) + perPage - 1) / perPage
	writeResult(w, http.StatusOK, items, map[string]int{
		"page": 1, "per_page": perPage, "count": len(items),
		"total_count": len(items), "total_pages": pages,
	})
}

func zoneJSON(z *zone, p Perms) map[string]any {
	var perms []string
	if p.ZoneRead {
		perms = append(perms, "#zone:read")
	}
	if p.DNSEdit {
		perms = append(perms, "#dns_records:edit", "#dns_records:read")
	}
	return map[string]any{
		"id":           z.id,
		"name":         z.name,
		"status":       "active",
		"paused":       false,
		"type":         "full",
		"name_servers": []string{"ns1." + z.name, "ns2." + z.name},
		"account":      map[string]string{"id": "0123456789abcdef0123456789abcdef", "name": "cftest account"},
		"owner":        map[string]string{"id": "0123456789abcdef0123456789abcdef", "name": "cftest", "type": "user"},
		"plan":         map[string]any{"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "legacy_id": "free"},
		"permissions":  perms,
	}
}

func recordJSON(r *record) map[string]any {
	m := map[string]any{
		"id":          r.id,
		"zone_id":     r.zone.id,
		"zone_name":   r.zone.name,
		"name":        r.name,
		"type":        r.typ,
		"content":     r.content,
		"ttl":         r.ttl,
		"proxiable":   false,
		"proxied":     false,
		"locked":      false,
		"settings":    map[string]any{},
		"meta":        map[string]any{},
		"tags":        []string{},
		"comment":     nil,
		"created_on":  r.created.Format(time.RFC3339Nano),
		"modified_on": r.modified.Format(time.RFC3339Nano),
	}
	if r.comment != "" {
		m["comment"] = r.comment
	}
	return m
}

func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func tokenID(tok string) string {
	sum := sha256.Sum256([]byte("cftest token " + tok))
	return hex.EncodeToString(sum[:16])
}
