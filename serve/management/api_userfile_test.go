package management

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAPIFileMappingRefusesWhatIsNotARegularFile: POST /api/v1/mappings
// naming, as cert_file or key_file, a device that never ends, a FIFO
// without a writer, a directory or a file over the PEM limit answers 422
// within a second and leaves the state as it was, and serve goes on.
func TestAPIFileMappingRefusesWhatIsNotARegularFile(t *testing.T) {
	ta := newTestAPI(t)
	dir := t.TempDir()
	kp := selfSigned(t, "files.example.com")
	certFile, keyFile := filepath.Join(dir, "good.crt"), filepath.Join(dir, "good.key")
	for name, b := range map[string][]byte{certFile: kp.CertPEM, keyFile: kp.KeyPEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, append(append([]byte{}, kp.CertPEM...), make([]byte, 2<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
	}{
		// Without state/userfile, /dev/zero would exhaust memory, a FIFO
		// hang the request, and a valid PEM padded past 1 MiB pass.
		{"a directory", dir},
		{"a PEM file padded past 1 MiB", big},
		{"/dev/null", "/dev/null"},
		{"a FIFO", fifo},
		{"/dev/zero", "/dev/zero"},
		{"/dev/urandom", "/dev/urandom"},
	} {
		for _, field := range []string{"cert_file", "key_file"} {
			t.Run(tc.name+" as "+field, func(t *testing.T) {
				body := map[string]any{"listener": "web", "hosts": []string{"files.example.com"}, "source": "file",
					"cert_file": certFile, "key_file": keyFile}
				body[field] = tc.path
				b, _ := json.Marshal(body)
				before := ta.snapshot()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "POST", ta.srv.URL+"/api/v1/mappings", strings.NewReader(string(b)))
				req.Header.Set("Authorization", ta.bearer())
				req.Header.Set("Content-Type", "application/json")
				resp, err := ta.srv.Client().Do(req)
				if err != nil {
					t.Fatalf("no answer within a second: %v", err)
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", resp.StatusCode, out)
				}
				e := answer{status: resp.StatusCode, body: string(out)}.errorBody(t)
				if !strings.Contains(e.Error, tc.path) {
					t.Errorf("the error does not name %s: %s", tc.path, e.Error)
				}
				sameSnapshot(t, before, ta.snapshot())
			})
		}
	}
	// The good pair is accepted: the refusals above were about the files.
	if a := ta.post("/api/v1/mappings", map[string]any{"listener": "web", "hosts": []string{"files.example.com"},
		"source": "file", "cert_file": certFile, "key_file": keyFile}); a.status != http.StatusCreated {
		t.Errorf("the good pair: %d %s", a.status, a.body)
	}
}
