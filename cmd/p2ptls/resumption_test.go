package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sClient runs openssl s_client for sni with one HTTP request, saving the
// session to sessOut and offering sessIn when given, and returns whether
// it resumed, the subject served and the whole output.
func sClient(t *testing.T, addr, sni, version, sessIn, sessOut string) (resumed bool, subject, out string) {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", sni, version, "-ign_eof"}
	if sessIn != "" {
		args = append(args, "-sess_in", sessIn)
	}
	if sessOut != "" {
		args = append(args, "-sess_out", sessOut)
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni))
	done := make(chan struct{})
	var b []byte
	go func() { defer close(done); b, _ = cmd.CombinedOutput() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("openssl s_client for %s did not finish:\n%s", sni, b)
	}
	out = string(b)
	m := regexp.MustCompile(`(?m)^(New|Reused), TLSv1\.[23]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("openssl s_client for %s: no New/Reused line:\n%s", sni, out)
	}
	if s := regexp.MustCompile(`(?m)^subject=(.*)$`).FindStringSubmatch(out); s != nil {
		subject = strings.TrimSpace(s[1])
	}
	return m[1] == "Reused", subject, out
}

// Real clients (openssl s_client -sess_out/-sess_in) cannot resume a
// session made for another name, or on the fallback, in TLS 1.2 and 1.3;
// the request then goes to the upstream of the certificate served. The
// same name still resumes.
func TestPublicResumptionWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	t.Parallel()
	answer := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream-"+name) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.com", "--self-signed", "--id", "app", "--upstream", answer("app"))
	p.must(t, "mapping", "add", "--listener", "web", "--host", "echo.example.com", "--self-signed", "--id", "echo", "--upstream", answer("echo"))
	p.serve = startServe(t, p.env)

	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		for _, tc := range []struct {
			made, used string
			resume     bool
		}{
			{"app.example.com", "app.example.com", true},
			{"app.example.com", "echo.example.com", false},
			{"unknown.test", "echo.example.com", false},
		} {
			t.Run(version+"/"+tc.made+"->"+tc.used, func(t *testing.T) {
				sess := filepath.Join(t.TempDir(), "session.pem")
				if resumed, _, out := sClient(t, web, tc.made, version, "", sess); resumed {
					t.Fatalf("the first connection resumed:\n%s", out)
				}
				resumed, subject, out := sClient(t, web, tc.used, version, sess, "")
				if resumed != tc.resume {
					t.Errorf("session made for %s, offered for %s: resumed %v, want %v\n%s", tc.made, tc.used, resumed, tc.resume, out)
				}
				if !resumed && subject != "CN = "+tc.used {
					t.Errorf("full handshake served %q, want the certificate of %s", subject, tc.used)
				}
				want := "upstream-" + strings.TrimSuffix(tc.used, ".example.com")
				if !strings.Contains(out, want) {
					t.Errorf("request for %s not answered by %s:\n%s", tc.used, want, out)
				}
			})
		}
	}
}
