package edge

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
)

func TestRecoverCountsAndLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	before := Panics()
	func() {
		defer Recover(log, "test loop")
		panic("boom")
	}()
	if Panics() != before+1 {
		t.Fatalf("Panics() = %d; want %d", Panics(), before+1)
	}
	out := buf.String()
	for _, want := range []string{"level=ERROR", "test loop", "boom", "stack="} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

func TestTLS12SuitesAreECDHEAndAEAD(t *testing.T) {
	for _, id := range TLSConfig().CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE with an AEAD", name)
		}
	}
}
