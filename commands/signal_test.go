package commands

import (
	"io"
	"testing"
)

// TestFirstCommand: Run finds serve, which keeps its own shutdown, past
// the global flags, and nothing else passes for it.
func TestFirstCommand(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"p2ptls", "serve"}, "serve"},
		{[]string{"p2ptls", "--config-dir", "serve", "listener", "list"}, "listener"},
		{[]string{"p2ptls", "--config-dir", "/x", "serve"}, "serve"},
		{[]string{"p2ptls", "--config-dir=/x", "--lock-timeout", "5s", "serve"}, "serve"},
		{[]string{"p2ptls", "mapping", "add", "serve"}, "mapping"},
		{[]string{"p2ptls", "--", "serve"}, ""},
		{[]string{"p2ptls"}, ""},
	} {
		if got := firstCommand(app, tc.args); got != tc.want {
			t.Errorf("firstCommand(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}
