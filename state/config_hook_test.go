package state

import (
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// The [acme] deploy hook settings of p2ptls.toml: a timeout that is no
// duration between 1 s and 24 h, or a blank hook, is refused with the line
// and field, as bad input (exit 2); a good one reads back.
func TestConfigDeployHook(t *testing.T) {
	tests := []struct {
		desc    string
		acme    string
		err     string // "" for valid
		timeout time.Duration
	}{
		{"no hook", ``, "", 5 * time.Minute},
		{"hook, default timeout", `deploy_hook = "systemctl reload nginx"`, "", 5 * time.Minute},
		{"hook and timeout", "deploy_hook = \"true\"\ndeploy_hook_timeout = \"90s\"", "", 90 * time.Second},
		{"not a duration", "deploy_hook = \"true\"\n\ndeploy_hook_timeout = \"five minutes\"", `line 5, field "acme.deploy_hook_timeout"`, 0},
		{"no unit", "deploy_hook_timeout = \"300\"", `line 3, field "acme.deploy_hook_timeout"`, 0},
		{"zero", "deploy_hook_timeout = \"0s\"", `between 1s and 24h`, 0},
		{"negative", "deploy_hook_timeout = \"-5m\"", `between 1s and 24h`, 0},
		{"too long", "deploy_hook_timeout = \"48h\"", `between 1s and 24h`, 0},
		{"blank hook", `deploy_hook = "   "`, `line 3, field "acme.deploy_hook": deploy_hook is blank`, 0},
		{"NUL in the hook", `deploy_hook = "true\u0000"`, `NUL`, 0},
		{"not a string", `deploy_hook_timeout = 300`, `acme.deploy_hook_timeout`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b := "schema_version = 2\n[acme]\n" + tc.acme + "\n"
			cfg, err := ParseConfig([]byte(b))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.ACME.HookTimeout(); got != tc.timeout {
					t.Errorf("timeout %v, want %v", got, tc.timeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || fault.KindOf(err) != fault.Invalid {
				t.Errorf("err %v (kind %v), want bad input containing %q", err, fault.KindOf(err), tc.err)
			}
		})
	}
}
