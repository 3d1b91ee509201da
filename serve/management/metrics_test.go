package management

import (
	"net/http"
	"strings"
	"testing"
)

// /metrics opens for an admin token as Bearer only: not without one, not
// for a revoked one, and not for a UI session (a cookie a browser would
// send for a page that points it there).
func TestMetricsNeedsBearerToken(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("p2ptls_build_info 1\n"))
	})
	ta := newTestAPI(t, func(o *Options) { o.Metrics = metrics })
	sid := ta.signIn(ta.token).Value
	tests := []struct {
		name   string
		auth   string
		cookie bool
		want   int
	}{
		{"bearer", ta.bearer(), false, http.StatusOK},
		{"bearer and a session", ta.bearer(), true, http.StatusOK},
		{"no token", "", false, http.StatusUnauthorized},
		{"a UI session only", "", true, http.StatusUnauthorized},
		{"revoked token", "Bearer " + ta.revoked, false, http.StatusUnauthorized},
		{"not bearer", "Basic b3BzOnNlY3JldA==", false, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			s := ""
			if tc.cookie {
				s = sid
			}
			code, h, body := ta.uiCall("GET", "/metrics", s, "", "", "", hdr)
			if code != tc.want {
				t.Fatalf("GET /metrics: %d %s, want %d", code, body, tc.want)
			}
			if code == http.StatusOK && !strings.Contains(body, "p2ptls_build_info 1") {
				t.Errorf("body %q is not the metrics", body)
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", h)
			}
		})
	}
	// Without metrics (as in tests of other routes), no route.
	plain := newTestAPI(t)
	if code, _, _ := plain.uiCall("GET", "/metrics", "", "", "", "", map[string]string{"Authorization": plain.bearer()}); code != http.StatusNotFound {
		t.Errorf("without Options.Metrics: GET /metrics answered %d, want 404", code)
	}
}
