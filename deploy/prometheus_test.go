package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// promtool runs promtool in dir and returns its output and error.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin := toolOrSkip(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copyPrometheus copies deploy/prometheus into a temporary directory, with
// alerts.yaml changed by edit (nil: unchanged).
func copyPrometheus(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"alerts.yaml", "alerts_test.yaml", "scrape.yaml"} {
		b, err := os.ReadFile(filepath.Join("prometheus", name))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if name == "alerts.yaml" && edit != nil {
			if s = edit(s); s == string(b) {
				t.Fatal("the edit of alerts.yaml changed nothing")
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrometheusRules(t *testing.T) {
	dir := filepath.Join(".", "prometheus")

	t.Run("check rules", func(t *testing.T) {
		if out, err := promtool(t, dir, "check", "rules", "--lint=all", "--lint-fatal", "alerts.yaml"); err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	})

	t.Run("test rules", func(t *testing.T) {
		if out, err := promtool(t, dir, "test", "rules", "alerts_test.yaml"); err != nil {
			t.Fatalf("promtool test rules: %v\n%s", err, out)
		}
	})

	// The unit tests must tell a lifetime rule from the fixed one the issue
	// warns about: "30 days left" fires on every 6-day certificate.
	t.Run("a fixed 30-day rule fails the tests", func(t *testing.T) {
		fixed := copyPrometheus(t, func(s string) string {
			return regexp.MustCompile(`(?s)(alert: P2ptlsCertificateNotRenewed\n\s+expr: ).*?\n(\s+for:)`).
				ReplaceAllString(s, "${1}p2ptls_cert_not_after_seconds - time() < 30 * 86400\n${2}")
		})
		out, err := promtool(t, fixed, "test", "rules", "alerts_test.yaml")
		if err == nil {
			t.Fatalf("promtool test rules passed with a fixed 30-day rule:\n%s", out)
		}
		if !strings.Contains(out, "m6-fresh") || !strings.Contains(out, "m90-due") {
			t.Errorf("the failure does not name the fresh 6-day and the just-due 90-day certificate:\n%s", out)
		}
	})

	// Each alert has series that make it fire and a time where it must not.
	t.Run("every alert is tested firing and quiet", func(t *testing.T) {
		rules, err := os.ReadFile(filepath.Join(dir, "alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		tests, err := os.ReadFile(filepath.Join(dir, "alerts_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		firing, quiet := map[string]bool{}, map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+alertname: (\S+)\n\s+exp_alerts:( \[\])?$`).FindAllStringSubmatch(string(tests), -1) {
			if m[2] == "" {
				firing[m[1]] = true
			} else {
				quiet[m[1]] = true
			}
		}
		alerts := regexp.MustCompile(`(?m)^\s+- alert: (\S+)$`).FindAllStringSubmatch(string(rules), -1)
		if len(alerts) == 0 {
			t.Fatal("alerts.yaml has no alerts")
		}
		for _, m := range alerts {
			if !firing[m[1]] || !quiet[m[1]] {
				t.Errorf("%s: tested firing %v, quiet %v; want both", m[1], firing[m[1]], quiet[m[1]])
			}
		}
		// Every alert names what to do, and how bad it is.
		for _, block := range regexp.MustCompile(`(?m)^\s+- alert: `).Split(string(rules), -1)[1:] {
			name, _, _ := strings.Cut(block, "\n")
			if !regexp.MustCompile(`severity: (warning|critical)`).MatchString(block) {
				t.Errorf("%s: no severity warning or critical", name)
			}
			if !strings.Contains(block, "summary:") || !strings.Contains(block, "description:") {
				t.Errorf("%s: needs a summary and a description", name)
			}
		}
	})

	// The example scrape configuration, with its files where promtool can
	// find them (it checks that the token and CA files exist).
	t.Run("check config", func(t *testing.T) {
		tmp := copyPrometheus(t, nil)
		b, err := os.ReadFile(filepath.Join(tmp, "scrape.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.NewReplacer(
			"/etc/prometheus/rules/p2ptls-alerts.yaml", filepath.Join(tmp, "alerts.yaml"),
			"/etc/prometheus/", tmp+"/",
		).Replace(string(b))
		for _, f := range []string{"p2ptls.token", "p2ptls-ca.crt"} {
			if !strings.Contains(cfg, filepath.Join(tmp, f)) {
				t.Fatalf("scrape.yaml does not name /etc/prometheus/%s", f)
			}
			if err := os.WriteFile(filepath.Join(tmp, f), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := promtool(t, tmp, "check", "config", "--lint=all", "--lint-fatal", "prometheus.yml"); err != nil {
			t.Fatalf("promtool check config: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`(?m)^\s+- job_name: p2ptls$`).MatchString(cfg) {
			t.Error(`scrape.yaml has no job "p2ptls", which the alerts select`)
		}
	})
}
