package management

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/admintoken"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// Secrets of the test state: no answer and no log line may contain them.
const (
	cfToken    = "cf-token-AAAAbbbbCCCCddddEEEE0001"
	spareToken = "spare-token-ZZZZyyyyXXXXwwww0002"
)

// testAPI is the real management handler over a temporary state.
type testAPI struct {
	t       testing.TB
	root    string
	store   *state.Dir
	srv     *httptest.Server
	o       Options      // what the handler was made with
	h       http.Handler // the handler srv serves
	token   string       // valid admin token
	revoked string       // an admin token that was revoked
	logs    *syncBuffer
	// bodies collects every answer, to check that no secret was answered.
	mu     sync.Mutex
	bodies []string
}

// syncBuffer is a log sink that tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestAPI starts the handler over a state with:
//   - listeners "web" (with an HTTP address) and "api"
//   - DNS credentials "cf" (enabled, used by mapping "wild") and "spare"
//     (enabled, unused)
//   - mappings "shop" (self-signed, shop.example.com on web), "upload"
//     (manual, upload.example.com on web) and "wild" (acme dns-01 with cf,
//     *.example.com on web)
//   - an admin token and a revoked one
func newTestAPI(t testing.TB, opts ...func(*Options)) *testAPI {
	return newTestAPIWith(t, 5*time.Second, opts...)
}

// newTestAPIWith is newTestAPI with a lock timeout, and opts changing the
// handler's Options.
func newTestAPIWith(t testing.TB, lockTimeout time.Duration, opts ...func(*Options)) *testAPI {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(root, lockTimeout)
	ctx := context.Background()
	now := time.Now()
	for _, l := range []state.Listener{{Name: "web", Addr: "127.0.0.1:18443", HTTPAddr: "127.0.0.1:18080"}, {Name: "api", Addr: "127.0.0.1:19443"}} {
		if _, err := state.AddListener(ctx, s, l); err != nil {
			t.Fatal(err)
		}
	}
	for name, tok := range map[string]string{"cf": cfToken, "spare": spareToken} {
		if err := dnscred.Add(ctx, s, state.DNSCredential{Name: name, Provider: "cloudflare"}, tok); err != nil {
			t.Fatal(err)
		}
	}
	up := selfSigned(t, "upload.example.com")
	for _, in := range []mappings.Input{
		{Mapping: state.Mapping{ID: "shop", Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceSelfSigned}},
		{Mapping: state.Mapping{ID: "upload", Listener: "web", Hosts: []string{"upload.example.com"}, Source: state.SourceManual}, CertPEM: up.CertPEM, KeyPEM: up.KeyPEM},
		{Mapping: state.Mapping{ID: "wild", Listener: "web", Hosts: []string{"*.example.com"}, Source: state.SourceACME, Challenge: state.ChallengeDNS01, DNSCredential: "cf", KeyType: "ec256"}},
	} {
		if _, _, err := mappings.Add(ctx, s, in, now); err != nil {
			t.Fatal(err)
		}
	}
	token, err := admintoken.Create(ctx, s, "ops", now)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := admintoken.Create(ctx, s, "old", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := admintoken.Revoke(ctx, s, "old"); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	o := Options{
		Store: s,
		Log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Status: func() *runstatus.Status {
			return &runstatus.Status{ServeRunning: true, PID: os.Getpid(), Listeners: []runstatus.Listener{}}
		},
	}
	for _, opt := range opts {
		opt(&o)
	}
	ta := &testAPI{t: t, root: root, store: s, token: token, revoked: revoked, logs: logs, o: o}
	ta.h = newHandler(t.Context(), o)
	ta.srv = httptest.NewServer(ta.h)
	t.Cleanup(ta.srv.Close)
	t.Cleanup(func() {
		for _, secret := range []string{cfToken, spareToken, token, revoked} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret is in the log:\n%s", logs.String())
			}
			ta.mu.Lock()
			for _, b := range ta.bodies {
				if strings.Contains(b, secret) {
					t.Errorf("a secret is in an answer: %s", b)
				}
			}
			ta.mu.Unlock()
		}
	})
	return ta
}

// selfSigned makes a certificate and key for hosts, valid now.
func selfSigned(t testing.TB, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), time.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   string
}

// json decodes the body into v and fails the test when it is not JSON.
func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %q", a.status, err, a.body)
	}
}

// errorBody checks that the answer is a JSON error with a message.
func (a answer) errorBody(t *testing.T) apiError {
	t.Helper()
	var e apiError
	a.json(t, &e)
	if e.Error == "" || e.Hint == "" {
		t.Errorf("error answer %d without an error message or a hint: %s", a.status, a.body)
	}
	var fields map[string]any
	a.json(t, &fields)
	for k := range fields {
		if k != "error" && k != "hint" {
			t.Errorf("error answer has field %q: %s", k, a.body)
		}
	}
	return e
}

// request describes one call: auth "" sends no Authorization header.
type request struct {
	method, path string
	auth         string // the full header value; see bearer
	contentType  string
	body         string
}

func (ta *testAPI) bearer() string { return "Bearer " + ta.token }

// do sends req and returns the answer.
func (ta *testAPI) do(req request) answer {
	ta.t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(req.method, ta.srv.URL+req.path, body)
	if err != nil {
		ta.t.Fatal(err)
	}
	if req.auth != "" {
		r.Header.Set("Authorization", req.auth)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	resp, err := ta.srv.Client().Do(r)
	if err != nil {
		ta.t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ta.t.Fatal(err)
	}
	ta.mu.Lock()
	ta.bodies = append(ta.bodies, string(b))
	ta.mu.Unlock()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		ta.t.Errorf("%s %s: Content-Type %q", req.method, req.path, ct)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get, post and del are authorised calls; post sends JSON.
func (ta *testAPI) get(path string) answer {
	ta.t.Helper()
	return ta.do(request{method: "GET", path: path, auth: ta.bearer()})
}

func (ta *testAPI) post(path string, v any) answer {
	ta.t.Helper()
	var body string
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			ta.t.Fatal(err)
		}
		body = string(b)
	}
	return ta.do(request{method: "POST", path: path, auth: ta.bearer(), contentType: "application/json", body: body})
}

func (ta *testAPI) del(path string) answer {
	ta.t.Helper()
	return ta.do(request{method: "DELETE", path: path, auth: ta.bearer()})
}

// readState returns a file of the state.
func (ta *testAPI) readState(name string) string {
	ta.t.Helper()
	b, err := os.ReadFile(filepath.Join(ta.root, filepath.FromSlash(name)))
	if err != nil {
		ta.t.Fatal(err)
	}
	return string(b)
}

// snapshot records the whole state directory: a refused request must not
// even bump p2ptls.rev.
func (ta *testAPI) snapshot() map[string]string { return statetest.Snapshot(ta.t, ta.root) }

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	statetest.AssertSame(t, before, after)
}
