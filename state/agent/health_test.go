package agent_test

import (
	"context"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// autoState creates a state directory with a management CA and server
// certificate for the loopback names, as serve's first start in mode auto
// leaves it, and returns it with the server's key pair PEMs.
func autoState(t *testing.T) (dir string, certPEM, keyPEM []byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "state")
	ctx := context.Background()
	s := state.OpenDir(dir, time.Second)
	if err := statemgmt.Init(ctx, s, pki.ParseNames([]string{"localhost", "127.0.0.1", "::1"}), time.Now()); err != nil {
		t.Fatal(err)
	}
	cert, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(statemgmt.ServerCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(statemgmt.ServerKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	return dir, cert, key
}

// hostPort is the HOST:PORT of a test server's URL.
func hostPort(srv *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://")
}

// TestHealth checks the local serve's /healthz as the container's
// HEALTHCHECK does, against real listeners on 127.0.0.1: each failure is a
// fault naming what failed and the fix, bad settings are invalid input, and
// nothing in the state directory changes, not even a lock file.
func TestHealth(t *testing.T) {
	dir, srvCert, srvKey := autoState(t)
	_, otherCert, otherKey := autoState(t) // a second state: another CA
	caPEM, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(statemgmt.CACertFile)))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, filepath.FromSlash(statemgmt.CACertFile))
	emptyDir := filepath.Join(t.TempDir(), "fresh") // serve never ran here

	auto := serveTLS(t, srvCert, srvKey, management("", http.StatusOK, caPEM))
	foreign := serveTLS(t, otherCert, otherKey, management("", http.StatusOK, nil))
	unhealthy := serveTLS(t, srvCert, srvKey, management("", http.StatusServiceUnavailable, caPEM))
	plain := httptest.NewUnstartedServer(management("", http.StatusOK, nil))
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	plain.Start()
	t.Cleanup(plain.Close)
	// The auto certificate covers 127.0.0.1, so a listener on all
	// interfaces is checked there.
	allIfaces := ":" + strings.Split(hostPort(auto), ":")[1]

	// A provided certificate for a public name, verified for the host of
	// MANAGEMENT_PUBLIC_URL while the check dials loopback.
	ca := newCA(t, "provided CA")
	pub := issue(t, ca, time.Now(), "mgmt.example")
	provided := serveTLS(t, pub.CertPEM, pub.KeyPEM, management("", http.StatusOK, nil))
	providedCAFile := filepath.Join(t.TempDir(), "provided-ca.pem")
	if err := os.WriteFile(providedCAFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	type settings = statemgmt.Settings
	tests := []struct {
		desc      string
		dir       string
		set       settings
		caFile    string
		caB64     string
		timeout   time.Duration
		kind      fault.Kind // checked only when msg is set
		msg, hint []string   // nil: healthy
		verified  string     // healthy: what verified the certificate
	}{
		{desc: "healthy, mode auto", dir: dir, set: settings{Mode: "auto", Listen: hostPort(auto)},
			verified: "the state's management CA"},
		{desc: "healthy, listening on all interfaces", dir: dir, set: settings{Mode: "auto", Listen: allIfaces},
			verified: "the state's management CA"},
		{desc: "healthy, mode provided with MANAGEMENT_CA_FILE", dir: emptyDir,
			set:    settings{Mode: "provided", CertFile: "x", KeyFile: "y", PublicURL: "https://mgmt.example:8443", Listen: hostPort(provided)},
			caFile: providedCAFile, verified: "the given CA"},
		{desc: "healthy, mode provided with MANAGEMENT_CA_PEM_BASE64", dir: emptyDir,
			set:   settings{Mode: "provided", CertFile: "x", KeyFile: "y", PublicURL: "https://mgmt.example:8443", Listen: hostPort(provided)},
			caB64: base64.StdEncoding.EncodeToString(ca.CertPEM), verified: "the given CA"},
		{desc: "healthy, mode off", dir: emptyDir, set: settings{Mode: "off", AllowInsecureHTTP: true, Listen: hostPort(plain)}},

		{desc: "serve not running", dir: dir, set: settings{Mode: "auto", Listen: closedPort(t)},
			kind: fault.Failure, msg: []string{"serve is not answering on MANAGEMENT_LISTEN", "connection refused"},
			hint: []string{"start 'p2ptls serve'", "MANAGEMENT_LISTEN"}},
		{desc: "serve never ran in this state", dir: emptyDir, set: settings{Mode: "auto", Listen: hostPort(auto)},
			kind: fault.Failure, msg: []string{"serve is not ready", "has no management CA"},
			hint: []string{"start serve with this CONFIG_DIR"}},
		{desc: "wrong CA: another state's serve", dir: dir, set: settings{Mode: "auto", Listen: hostPort(foreign)},
			kind: fault.Failure, msg: []string{"is not signed by the CA this check trusts", `issued by "p2ptls management CA"`},
			hint: []string{"CONFIG_DIR", "MANAGEMENT_CA_FILE"}},
		{desc: "wrong CA: mode provided with the state's CA", dir: emptyDir,
			set:    settings{Mode: "provided", CertFile: "x", KeyFile: "y", PublicURL: "https://mgmt.example:8443", Listen: hostPort(provided)},
			caFile: caFile, kind: fault.Failure, msg: []string{"is not signed by the CA this check trusts", `issued by "provided CA"`},
			hint: []string{"MANAGEMENT_CA_FILE"}},
		{desc: "mode provided, certificate lacks the dialled name", dir: emptyDir,
			set:    settings{Mode: "provided", CertFile: "x", KeyFile: "y", Listen: hostPort(provided)},
			caFile: providedCAFile, kind: fault.Failure, msg: []string{"provided management certificate does not cover 127.0.0.1", "(it covers mgmt.example)"},
			hint: []string{"MANAGEMENT_PUBLIC_URL"}},
		{desc: "serve answers 503", dir: dir, set: settings{Mode: "auto", Listen: hostPort(unhealthy)},
			kind: fault.Failure, msg: []string{"/healthz answered \"503 Service Unavailable\", not 200 OK"}, hint: []string{"serve's log"}},
		{desc: "mode auto against plain HTTP", dir: dir, set: settings{Mode: "auto", Listen: hostPort(plain)},
			kind: fault.Failure, msg: []string{"does not speak TLS", "MANAGEMENT_TLS_MODE=off"}, hint: []string{"MANAGEMENT_TLS_MODE"}},
		{desc: "mode off against TLS", dir: dir, set: settings{Mode: "off", AllowInsecureHTTP: true, Listen: hostPort(auto)},
			kind: fault.Failure, msg: []string{"speaks TLS, not plain HTTP"}, hint: []string{"MANAGEMENT_TLS_MODE"}},
		{desc: "serve that never answers", dir: dir, set: settings{Mode: "auto", Listen: strings.TrimPrefix(silentServer(t), "https://")},
			timeout: 300 * time.Millisecond, kind: fault.Failure, msg: []string{"did not complete a TLS handshake in time"}, hint: []string{"serve's log"}},

		{desc: "mode off without the allow flag", dir: dir, set: settings{Mode: "off", Listen: hostPort(plain)},
			kind: fault.Invalid, msg: []string{"requires MANAGEMENT_ALLOW_INSECURE_HTTP=true"}, hint: []string{"MANAGEMENT_ALLOW_INSECURE_HTTP=true"}},
		{desc: "bad listen address", dir: dir, set: settings{Mode: "auto", Listen: "nope"},
			kind: fault.Invalid, msg: []string{`MANAGEMENT_LISTEN (--listen) "nope" is not HOST:PORT`}, hint: []string{":8443"}},
		{desc: "unknown mode", dir: dir, set: settings{Mode: "maybe", Listen: hostPort(auto)},
			kind: fault.Invalid, msg: []string{`unknown MANAGEMENT_TLS_MODE "maybe"`}, hint: []string{"auto, provided or off"}},
		{desc: "both CA sources", dir: emptyDir, set: settings{Mode: "provided", CertFile: "x", KeyFile: "y", Listen: hostPort(provided)},
			caFile: providedCAFile, caB64: "eA==", kind: fault.Invalid, msg: []string{"give the management CA one way only"}},
		{desc: "negative timeout", dir: dir, set: settings{Mode: "auto", Listen: hostPort(auto)}, timeout: -time.Second,
			kind: fault.Invalid, msg: []string{"is negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := statetest.Snapshot(t, tc.dir)
			res, err := agent.Health(context.Background(), agent.HealthInput{
				Settings: tc.set, Store: state.OpenDir(tc.dir, time.Second),
				CAFile: tc.caFile, CAPEMBase64: tc.caB64, Timeout: tc.timeout,
			})
			statetest.AssertSame(t, before, statetest.Snapshot(t, tc.dir))
			if tc.msg == nil {
				if err != nil {
					t.Fatalf("Health: %v (hint: %s)", err, fault.HintOf(err))
				}
				if !strings.HasSuffix(res.URL, "/healthz") || res.Mode != tc.set.Mode || !strings.HasPrefix(res.Verified, tc.verified) {
					t.Errorf("Health = %+v", res)
				}
				if tc.set.Mode == "off" {
					if !strings.HasPrefix(res.URL, "http://") || res.TLSVersion != "" {
						t.Errorf("mode off: %+v", res)
					}
				} else if res.TLSVersion == "" || res.NotAfter.IsZero() || !strings.HasPrefix(res.URL, "https://127.0.0.1:") {
					t.Errorf("mode %s: %+v", tc.set.Mode, res)
				}
				return
			}
			if res != nil {
				t.Errorf("Health returned a result along with its error: %+v", res)
			}
			wantFault(t, err, tc.kind, tc.msg, tc.hint)
		})
	}
	if _, err := os.Stat(emptyDir); !os.IsNotExist(err) {
		t.Errorf("the health check created the state directory %s: %v", emptyDir, err)
	}
}
