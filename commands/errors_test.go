package commands

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestFlagErrorsNameTheFlagAsTyped runs Main in process; the same cases
// run through the built binary in cmd/p2ptls.
func TestFlagErrorsNameTheFlagAsTyped(t *testing.T) {
	tests := []struct {
		args       []string
		want, hint string
		notHint    string
	}{
		{[]string{"listener", "add", "x", "--adr", ":1"}, "p2ptls listener add: unknown flag --adr", "did you mean --addr?", ""},
		{[]string{"listener", "add", "x", "-adr=:1"}, "unknown flag -adr\n", "did you mean --addr?", ""},
		{[]string{"--outptu", "json", "listener", "list"}, "p2ptls: unknown flag --outptu", "did you mean --output?", ""},
		{[]string{"cert", "renew", "--dasy", "3"}, "unknown flag --dasy", "did you mean --days?", ""},
		{[]string{"mapping", "add", "--cert", "x"}, "unknown flag --cert", "did you mean --cert-file?", ""},
		{[]string{"listener", "list", "--zzzzz"}, "unknown flag --zzzzz", "run 'p2ptls listener list --help'", "did you mean"},
		{[]string{"listener", "add", "x", "--addr"}, "p2ptls listener add: --addr needs a value", "", ""},
		{[]string{"mapping", "add", "--days", "abc"}, `invalid value "abc" for --days`, "", ""},
		{[]string{"listner", "list"}, `unknown command "listner"`, "did you mean 'p2ptls listener'?", ""},
		{[]string{"dns", "list"}, `unknown command "dns"`, "did you mean 'p2ptls dns-credential'?", ""},
		{[]string{"listener", "bogus"}, `p2ptls listener: unknown command "bogus"`, "for the list of commands", "did you mean"},
		{[]string{"dns-credential", "add", "cf", "--api-token=s3cr3t-v4lue"}, "p2ptls dns-credential add --api-token: tokens are never taken from the command line: use --api-token-file or --api-token-env", "shell history", ""},
		{[]string{"dns-credential", "add", "cf", "--token", "s3cr3t-v4lue"}, "add --token: tokens are never taken", "", ""},
		{[]string{"acme", "account", "register", "--eab-hmac", "s3cr3t-v4lue"}, "EAB HMAC keys are never taken from the command line: use --eab-hmac-file", "", ""},
		{[]string{"backup", "--passphrase=s3cr3t-v4lue"}, "passphrases are never taken from the command line: use --passphrase-file", "", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append([]string{appName, "--config-dir", t.TempDir()}, tc.args...), &out, &errb)
			lines := strings.SplitN(errb.String(), "\n", 2)
			if code != exitInvalid || out.Len() != 0 || !strings.Contains(lines[0]+"\n", tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out.String(), errb.String(), tc.want)
			}
			if len(lines) < 2 || !strings.Contains(lines[1], tc.hint) || (tc.notHint != "" && strings.Contains(lines[1], tc.notHint)) {
				t.Errorf("hint %q: want %q, not %q", errb.String(), tc.hint, tc.notHint)
			}
			if strings.Contains(errb.String(), "s3cr3t") || strings.Contains(errb.String(), "provided but not defined") {
				t.Errorf("stderr echoes the value or urfave's wording: %q", errb.String())
			}
		})
	}
}

func TestCloseEnough(t *testing.T) {
	for _, tc := range []struct {
		typed, candidate string
		want             bool
	}{
		{"adr", "addr", true}, {"dasy", "days", true}, {"lisetner", "listener", true}, {"cert", "cert-file", true},
		{"q", "ca", false}, {"zzzzz", "quiet", false}, {"bogus", "show", false}, {"ab", "", false}, {"ca", "cat", true},
	} {
		if got := closeEnough(tc.typed, tc.candidate); got != tc.want {
			t.Errorf("closeEnough(%q, %q) = %v, want %v", tc.typed, tc.candidate, got, tc.want)
		}
	}
}
