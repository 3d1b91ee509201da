package management

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// mgmtAnswer is the part of GET /api/v1/management and of a step's
// answer that the tests read.
type mgmtAnswer struct {
	Changed       *bool                   `json:"changed"`
	Mode          string                  `json:"mode"`
	CA            *statemgmt.CertInfo     `json:"ca"`
	Server        *statemgmt.CertInfo     `json:"server"`
	Missing       []string                `json:"missing_names"`
	AgentEnv      []string                `json:"agent_env"`
	AgentEnvError string                  `json:"agent_env_error"`
	PublicURLSet  bool                    `json:"public_url_set"`
	Rotation      *statemgmt.RotationInfo `json:"rotation"`
}

// newMgmtAPI is newTestAPI with management TLS in mode and, unless mode
// is provided, the management CA and server certificate made as serve
// makes them.
func newMgmtAPI(t *testing.T, mode string) *testAPI {
	t.Helper()
	set := statemgmt.Settings{Mode: mode, Listen: "127.0.0.1:8443", PublicURL: "https://mgmt.example.com:8443"}
	ta := newTestAPI(t, func(o *Options) { o.Settings = set })
	if mode != statemgmt.ModeProvided {
		if _, _, err := statemgmt.Ensure(context.Background(), ta.store, set.WantedNames(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return ta
}

func (ta *testAPI) management(t *testing.T) mgmtAnswer {
	t.Helper()
	a := ta.get("/api/v1/management")
	if a.status != 200 {
		t.Fatalf("GET /api/v1/management: %d %s", a.status, a.body)
	}
	var m mgmtAnswer
	a.json(t, &m)
	return m
}

// step posts a rotation step with body (raw JSON, "" for none) and
// expects 200 with changed as given.
func (ta *testAPI) step(t *testing.T, step, body string, changed bool) mgmtAnswer {
	t.Helper()
	a := ta.do(request{method: "POST", path: "/api/v1/management/rotation/" + step, auth: ta.bearer(), contentType: "application/json", body: body})
	if a.status != 200 {
		t.Fatalf("POST %s %s: %d %s", step, body, a.status, a.body)
	}
	var m mgmtAnswer
	a.json(t, &m)
	if m.Changed == nil || *m.Changed != changed {
		t.Errorf("POST %s %s: changed %v, want %v: %s", step, body, m.Changed, changed, a.body)
	}
	if m.Rotation == nil || m.CA == nil {
		t.Fatalf("POST %s: no rotation or CA in the answer: %s", step, a.body)
	}
	return m
}

// refused posts a step that must be refused with status, a hint that
// speaks API (naming wantHint, no CLI flag or command of the server
// side), and no change to the state.
func (ta *testAPI) refused(t *testing.T, step, contentType, body string, status int, wantHint string) {
	t.Helper()
	before := ta.snapshot()
	a := ta.do(request{method: "POST", path: "/api/v1/management/rotation/" + step, auth: ta.bearer(), contentType: contentType, body: body})
	if a.status != status {
		t.Errorf("POST %s %s: %d, want %d: %s", step, body, a.status, status, a.body)
		return
	}
	e := a.errorBody(t)
	if strings.Contains(e.Error, "\n") || strings.Contains(e.Hint, "\n") {
		t.Errorf("POST %s: more than one line: %s", step, a.body)
	}
	if !strings.Contains(e.Hint, wantHint) {
		t.Errorf("POST %s %s: hint %q, want it to name %q", step, body, e.Hint, wantHint)
	}
	for _, cli := range []string{"--", "ca rotate", "p2ptls serve"} {
		if strings.Contains(e.Hint, cli) || strings.Contains(e.Error, cli) {
			t.Errorf("POST %s %s: the answer speaks CLI (%q): %s", step, body, cli, a.body)
		}
	}
	sameSnapshot(t, before, ta.snapshot())
}

// agentCAs decodes the CAs of the MANAGEMENT_CA_PEM_BASE64 line.
func agentCAs(t *testing.T, lines []string) []*x509.Certificate {
	t.Helper()
	for _, l := range lines {
		if b64, ok := strings.CutPrefix(l, "MANAGEMENT_CA_PEM_BASE64="); ok {
			pemBytes, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				t.Fatal(err)
			}
			certs, err := pki.ParseCertChain(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			return certs
		}
	}
	t.Fatalf("no MANAGEMENT_CA_PEM_BASE64 among %q", lines)
	return nil
}

func fingerprints(certs []*x509.Certificate) []string {
	fps := make([]string, len(certs))
	for i, c := range certs {
		fps[i] = pki.Fingerprint(c)
	}
	return fps
}

// TestAPIManagementRotation walks start → switch → finish through the
// API, and every step out of order and every bad body at each stage.
func TestAPIManagementRotation(t *testing.T) {
	ta := newMgmtAPI(t, statemgmt.ModeAuto)
	m := ta.management(t)
	oldFP := m.CA.FingerprintSHA256
	if m.Mode != "auto" || m.Server == nil || len(m.Missing) != 0 || !m.PublicURLSet || m.AgentEnvError != "" || m.Changed != nil {
		t.Errorf("GET /api/v1/management: %+v", m)
	}
	if m.AgentEnv[0] != "MANAGEMENT_PUBLIC_URL=https://mgmt.example.com:8443" || strings.Join(fingerprints(agentCAs(t, m.AgentEnv)), ",") != oldFP {
		t.Errorf("agent env before a rotation: %q", m.AgentEnv)
	}
	if r := m.Rotation; r == nil || r.Stage != statemgmt.StageNone || r.Next != nil || r.Current.FingerprintSHA256 != oldFP || r.Last != nil {
		t.Fatalf("rotation before start: %+v", m.Rotation)
	}

	// No rotation open: only start applies; bad bodies are refused first.
	const startHint = "POST /api/v1/management/rotation/start"
	for _, step := range []string{"switch", "finish", "abort"} {
		ta.refused(t, step, "", "", http.StatusConflict, startHint)
	}
	for _, tc := range []struct {
		step, ct, body string
		status         int
		hint           string
	}{
		{"start", "application/json", `{"overlap":"soon"}`, 400, `"30d"`},
		{"start", "application/json", `{"overlap":"-5h"}`, 400, `"30d"`},
		{"start", "application/json", `{"overlap":"0d"}`, 400, `"30d"`},
		{"start", "application/json", `{"overlap":30}`, 400, hintJSON},
		{"start", "application/json", `{"Overlap":"30d"}`, 400, hintJSON},
		{"start", "application/json", `{"overlap":"30d","extra":1}`, 400, hintJSON},
		{"start", "application/json", `{"overlap":"30d"} {}`, 400, hintJSON},
		{"start", "application/json", `[]`, 400, hintJSON},
		{"start", "text/plain", `{"overlap":"30d"}`, 415, "application/json"},
		// Ten years and more end after the CA does.
		{"start", "application/json", `{"overlap":"3700d"}`, 422, `shorter "overlap"`},
		{"switch", "application/json", `{"confirm_agents_updated":"yes"}`, 400, hintJSON},
		{"finish", "application/json", `{"keep_old_key":1}`, 400, hintJSON},
		{"finish", "application/json", `{"keep_key":true}`, 400, hintJSON},
		{"abort", "application/json", `{"now":true}`, 400, hintJSON},
	} {
		ta.refused(t, tc.step, tc.ct, tc.body, tc.status, tc.hint)
	}
	if a := ta.do(request{method: "GET", path: "/api/v1/management/rotation/start", auth: ta.bearer()}); a.status != 405 || a.header.Get("Allow") != "POST" {
		t.Errorf("GET on a step: %d %v %s", a.status, a.header.Get("Allow"), a.body)
	}

	// start: the next CA, handed out after the current one.
	m = ta.step(t, "start", `{"overlap":"14d"}`, true)
	r := m.Rotation
	if r.Stage != statemgmt.StageStarted || r.Next == nil || r.Current.FingerprintSHA256 != oldFP || r.ServedBy != oldFP || r.Deadline == nil {
		t.Fatalf("after start: %+v", r)
	}
	nextFP := r.Next.FingerprintSHA256
	if d := time.Until(*r.Deadline); d < 14*24*time.Hour-time.Minute || d > 14*24*time.Hour {
		t.Errorf("deadline %v is not 14 days away", r.Deadline)
	}
	if got := strings.Join(fingerprints(agentCAs(t, m.AgentEnv)), ","); got != oldFP+","+nextFP {
		t.Errorf("agent env during the rotation: %s, want %s,%s", got, oldFP, nextFP)
	}
	if len(r.Agents) != 3 || r.Agents[0].Kind != statemgmt.AgentKindCurrentOnly || r.Agents[0].SurvivesFinish || !r.Agents[1].SurvivesFinish {
		t.Errorf("agent advice: %+v", r.Agents)
	}
	// Again: nothing changes (the body may be left out).
	before := ta.snapshot()
	ta.step(t, "start", "", false)
	sameSnapshot(t, before, ta.snapshot())
	ta.refused(t, "finish", "", "", http.StatusConflict, "POST /api/v1/management/rotation/switch")
	if got := ta.management(t); got.Rotation.Stage != statemgmt.StageStarted || got.Rotation.Next.FingerprintSHA256 != nextFP {
		t.Errorf("GET after start: %+v", got.Rotation)
	}

	// switch: the served certificate is from the next CA.
	m = ta.step(t, "switch", "{}", true)
	if m.Rotation.Stage != statemgmt.StageSwitched || m.Rotation.ServedBy != nextFP || m.Rotation.Switch == nil {
		t.Errorf("after switch: %+v", m.Rotation)
	}
	if m.Server == nil || m.Server.Issuer != m.Rotation.Next.Subject {
		t.Errorf("server certificate after switch issued by %v, want the next CA %s", m.Server, m.Rotation.Next.Subject)
	}
	ta.step(t, "switch", "", false)
	ta.refused(t, "start", "application/json", `{"overlap":"30d"}`, http.StatusConflict, "POST /api/v1/management/rotation/finish")

	// finish: the next CA is the CA.
	m = ta.step(t, "finish", `{"keep_old_key":true}`, true)
	if r := m.Rotation; r.Stage != statemgmt.StageNone || r.Next != nil || r.Current.FingerprintSHA256 != nextFP ||
		r.Last == nil || r.Last.Outcome != statemgmt.StageFinished || r.Last.Old != oldFP || !strings.Contains(r.Last.Retired, "retired") {
		t.Errorf("after finish: %+v", m.Rotation)
	}
	if m.CA.FingerprintSHA256 != nextFP || strings.Join(fingerprints(agentCAs(t, m.AgentEnv)), ",") != nextFP {
		t.Errorf("after finish the CA is %s and agents get %q, want %s alone", m.CA.FingerprintSHA256, m.AgentEnv, nextFP)
	}
	if key := ta.readState(strings.TrimPrefix(m.Rotation.Last.Retired, ta.root+"/") + "/ca.key"); !strings.Contains(key, "PRIVATE KEY") {
		t.Errorf("keep_old_key kept no key: %q", key)
	}
	ta.step(t, "finish", "", false)
	ta.refused(t, "abort", "", "", http.StatusConflict, "the new CA is the management CA now; POST /api/v1/management/rotation/start")
	ta.refused(t, "switch", "", "", http.StatusConflict, startHint)
}

// TestAPIManagementAbort: abort goes back from started and from switched,
// and a finish after abort is refused.
func TestAPIManagementAbort(t *testing.T) {
	for _, from := range []string{statemgmt.StageStarted, statemgmt.StageSwitched} {
		t.Run(from, func(t *testing.T) {
			ta := newMgmtAPI(t, statemgmt.ModeAuto)
			oldFP := ta.management(t).CA.FingerprintSHA256
			nextFP := ta.step(t, "start", "", true).Rotation.Next.FingerprintSHA256
			if from == statemgmt.StageSwitched {
				ta.step(t, "switch", "", true)
			}
			m := ta.step(t, "abort", "{}", true)
			if r := m.Rotation; r.Stage != statemgmt.StageNone || r.ServedBy != oldFP || r.Last == nil || r.Last.Outcome != statemgmt.StageAborted || r.Last.New != nextFP {
				t.Errorf("after abort: %+v", r)
			}
			if m.CA.FingerprintSHA256 != oldFP || m.Server.Issuer != m.CA.Subject || strings.Join(fingerprints(agentCAs(t, m.AgentEnv)), ",") != oldFP {
				t.Errorf("after abort: CA %s, server from %s, agents get %q", m.CA.FingerprintSHA256, m.Server.Issuer, m.AgentEnv)
			}
			ta.step(t, "abort", "", false)
			ta.refused(t, "finish", "", "", http.StatusConflict, "POST /api/v1/management/rotation/start")
			// A new rotation may begin.
			if r := ta.step(t, "start", "", true).Rotation; r.Next.FingerprintSHA256 == nextFP {
				t.Errorf("the new rotation reuses the aborted next CA")
			}
		})
	}
}

// TestAPIManagementLegacySwitch: a CA that predates rotation allows no
// cross-certificate, so switch needs confirm_agents_updated.
func TestAPIManagementLegacySwitch(t *testing.T) {
	ta := newMgmtAPI(t, statemgmt.ModeAuto)
	ctx := context.Background()
	now := time.Now()
	legacy, err := pki.NewCA("p2ptls management CA", now, pki.CAValidity) // MaxPathLen 0, as before rotation
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.IssueServer(legacy, ta.o.Settings.WantedNames(), now, statemgmt.ServerValidity)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{statemgmt.CACertFile: legacy.CertPEM, statemgmt.CAKeyFile: legacy.KeyPEM,
		statemgmt.ServerCertFile: srv.CertPEM, statemgmt.ServerKeyFile: srv.KeyPEM} {
		if err := ta.store.Write(ctx, name, b, state.SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	if m := ta.step(t, "start", "", true); m.Rotation.Current.CrossVerifiable {
		t.Fatalf("the legacy CA is cross-verifiable: %+v", m.Rotation.Current)
	}
	ta.refused(t, "switch", "", "", http.StatusConflict, `POST /api/v1/management/rotation/switch with {"confirm_agents_updated":true}`)
	ta.refused(t, "switch", "application/json", `{"confirm_agents_updated":false}`, http.StatusConflict, `{"confirm_agents_updated":true}`)
	if m := ta.step(t, "switch", `{"confirm_agents_updated":true}`, true); m.Rotation.Stage != statemgmt.StageSwitched {
		t.Errorf("confirmed switch: %+v", m.Rotation)
	}
}

// TestAPIManagementOtherModes: mode off and provided have no CA of
// p2ptls's to rotate: GET shows no rotation, every step is a 409.
func TestAPIManagementOtherModes(t *testing.T) {
	for _, mode := range []string{statemgmt.ModeOff, statemgmt.ModeProvided} {
		t.Run(mode, func(t *testing.T) {
			ta := newMgmtAPI(t, mode)
			if mode == statemgmt.ModeProvided {
				// A provided certificate without a CA in its file: no
				// agent lines, and why.
				kp := selfSigned(t, "mgmt.example.com")
				set := ta.o.Settings
				dir := t.TempDir()
				set.CertFile, set.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
				for f, b := range map[string][]byte{set.CertFile: kp.CertPEM, set.KeyFile: kp.KeyPEM} {
					if err := os.WriteFile(f, b, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				ta = newTestAPI(t, func(o *Options) { o.Settings = set })
			}
			m := ta.management(t)
			if m.Mode != mode || m.Rotation != nil {
				t.Errorf("GET in mode %s: %+v", mode, m)
			}
			if mode == statemgmt.ModeProvided && (m.AgentEnvError == "" || len(m.AgentEnv) != 0 || m.Server == nil) {
				t.Errorf("GET in mode provided: agent env %q, error %q, server %v", m.AgentEnv, m.AgentEnvError, m.Server)
			}
			if mode == statemgmt.ModeOff && (m.CA == nil || len(m.AgentEnv) == 0) {
				t.Errorf("GET in mode off shows no CA or agent lines: %+v", m)
			}
			for _, step := range []string{"start", "switch", "finish", "abort"} {
				ta.refused(t, step, "", "", http.StatusConflict, "MANAGEMENT_TLS_MODE=auto")
			}
		})
	}
}

// TestAPIManagementAuthAndCSRF: the routes need a token or a session,
// and a session's POSTs its CSRF token, as every other route.
func TestAPIManagementAuthAndCSRF(t *testing.T) {
	ta := newMgmtAPI(t, statemgmt.ModeAuto)
	steps := []string{"start", "switch", "finish", "abort"}
	before := ta.snapshot()
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + ta.revoked} {
		if a := ta.do(request{method: "GET", path: "/api/v1/management", auth: auth}); a.status != 401 {
			t.Errorf("GET with %q: %d", auth, a.status)
		}
		for _, s := range steps {
			if a := ta.do(request{method: "POST", path: "/api/v1/management/rotation/" + s, auth: auth, contentType: "application/json", body: "{}"}); a.status != 401 {
				t.Errorf("POST %s with %q: %d %s", s, auth, a.status, a.body)
			}
		}
	}
	sid := ta.signIn(ta.token).Value
	csrf := ta.csrfOf(sid)
	for _, bad := range []string{"", "wrong", csrf + "x"} {
		for _, s := range steps {
			code, _, body := ta.uiCall("POST", "/api/v1/management/rotation/"+s, sid, bad, "application/json", "{}", nil)
			if code != http.StatusForbidden || !strings.Contains(answer{status: code, body: body}.errorBody(t).Error, "CSRF") {
				t.Errorf("POST %s with CSRF %q: %d %s", s, bad, code, body)
			}
		}
	}
	sameSnapshot(t, before, ta.snapshot())
	if code, _, body := ta.uiCall("GET", "/api/v1/management", sid, "", "", "", nil); code != 200 || !strings.Contains(body, `"stage": "none"`) {
		t.Errorf("GET with the session: %d %s", code, body)
	}
	for _, s := range []string{"start", "switch", "abort"} {
		if code, _, body := ta.uiCall("POST", "/api/v1/management/rotation/"+s, sid, csrf, "application/json", "{}", nil); code != 200 {
			t.Errorf("POST %s with the session and its CSRF token: %d %s", s, code, body)
		}
	}
}

// TestRotationThroughTheLiveListener: a client's kept-alive connection
// to the management listener keeps working across switch and finish,
// while new handshakes get the certificate of each stage: from the
// current CA with the cross-certificate (started), from the next CA with
// its cross-certificate (switched; a client trusting only the old CA
// still verifies), from the new CA alone (finished; such a client fails).
func TestRotationThroughTheLiveListener(t *testing.T) {
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{})
	oldRoots := ls.roots
	kept := ls.client // its connection is made once and reused
	var reused, fresh int
	trace := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused++
		} else {
			fresh++
		}
	}})
	call := func(method, path string) mgmtAnswer {
		t.Helper()
		req, err := http.NewRequestWithContext(trace, method, ls.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", ta.bearer())
		resp, err := kept.Do(req)
		if err != nil {
			t.Fatalf("%s %s on the kept-alive connection: %v", method, path, err)
		}
		defer resp.Body.Close()
		// Read to the end, so that the connection is kept.
		b, err := io.ReadAll(resp.Body)
		var m mgmtAnswer
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v %s", method, path, resp.StatusCode, err, b)
		}
		return m
	}
	// handshake is a new connection trusting roots; it returns the
	// served chain's leaf issuer, or the verification error.
	handshake := func(roots *x509.CertPool) (*x509.Certificate, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ls.addr, &tls.Config{RootCAs: roots})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0], nil
	}
	// verifies waits (bounded) for serve to pick a step up: a new
	// handshake trusting roots verifies, with a leaf from the CA from.
	verifies := func(what string, roots *x509.CertPool, from *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaf, err := handshake(roots)
			if err == nil {
				if err = leaf.CheckSignatureFrom(from); err == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not verified within 10 s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pool := func(c ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, x := range c {
			p.AddCert(x)
		}
		return p
	}

	call("GET", "/api/v1/management")
	m := call("POST", "/api/v1/management/rotation/start")
	cas := agentCAs(t, m.AgentEnv)
	if len(cas) != 2 {
		t.Fatalf("agent CAs after start: %d", len(cas))
	}
	old, next := cas[0], cas[1]
	verifies("started, a client trusting only the next CA (through the cross-certificate)", pool(next), old)
	for name, roots := range map[string]*x509.CertPool{"old": oldRoots, "next": pool(next), "bundle": pool(old, next)} {
		if _, err := handshake(roots); err != nil {
			t.Errorf("started: a client trusting %s: %v", name, err)
		}
	}
	m = call("POST", "/api/v1/management/rotation/switch")
	if m.Rotation.Stage != statemgmt.StageSwitched {
		t.Fatalf("after switch: %+v", m.Rotation)
	}
	verifies("switched, a client trusting only the old CA (through the cross-certificate)", oldRoots, next)
	for name, roots := range map[string]*x509.CertPool{"old": oldRoots, "next": pool(next), "bundle": pool(old, next)} {
		if _, err := handshake(roots); err != nil {
			t.Errorf("switched: a client trusting %s: %v", name, err)
		}
	}
	if got := call("GET", "/api/v1/management"); got.Rotation.ServedBy != pki.Fingerprint(next) {
		t.Errorf("served by %s after switch", got.Rotation.ServedBy)
	}
	call("POST", "/api/v1/management/rotation/finish")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := handshake(oldRoots)
		if err != nil {
			var uae x509.UnknownAuthorityError
			if !errors.As(err, &uae) {
				t.Errorf("finished: an old-only client fails with %v, want an unknown authority", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("finished: a client trusting only the old CA still verifies after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := handshake(pool(next)); err != nil {
		t.Errorf("finished: a client trusting the new CA: %v", err)
	}
	if got := call("GET", "/api/v1/management"); got.Rotation.Stage != statemgmt.StageNone || got.CA.FingerprintSHA256 != pki.Fingerprint(next) {
		t.Errorf("after finish: %+v", got.Rotation)
	}
	if fresh != 1 || reused != 5 {
		t.Errorf("the API calls made %d connections and reused one %d times; want 1 and 5 (one kept-alive connection across every step)", fresh, reused)
	}
}

// TestAPIManagementDamagedRecord: a rotation record broken by hand is the
// state's failure, said in one line; no step changes anything.
func TestAPIManagementDamagedRecord(t *testing.T) {
	ta := newMgmtAPI(t, statemgmt.ModeAuto)
	if err := ta.store.Write(context.Background(), statemgmt.RotationFile, []byte("stage = [broken\n"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	a := ta.get("/api/v1/management")
	if e := a.errorBody(t); a.status != http.StatusConflict || !strings.Contains(e.Error, "rotation.toml") || !strings.Contains(e.Error, "damaged") || !strings.Contains(e.Hint, "backup") {
		t.Errorf("GET with a damaged rotation record: %d %s", a.status, a.body)
	}
	for _, step := range []string{"start", "switch", "finish", "abort"} {
		ta.refused(t, step, "", "", http.StatusConflict, "backup")
	}
}
