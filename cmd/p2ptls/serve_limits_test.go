package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Limit flags that cannot work are refused before serve opens anything.
func TestServeRefusesBadLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env, want string
	}{
		{"P2PTLS_MAX_HEADER_BYTES=100", "--max-header-bytes 100 is too small"},
		{"P2PTLS_TLS_HANDSHAKE_TIMEOUT=-1s", "--tls-handshake-timeout -1s is negative"},
		{"P2PTLS_UPSTREAM_RESPONSE_HEADER_TIMEOUT=-5s", "--upstream-response-header-timeout -5s is negative"},
		{"P2PTLS_MAX_CONNS=-1", "--max-conns -1 is negative"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			r := runServeExpectFailure(t, []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + freeAddr(t), tc.env})
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
}
