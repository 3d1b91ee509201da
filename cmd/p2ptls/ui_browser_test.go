package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// chromiumOptions are the options of every test's headless Chromium, which
// checks certificates. Without Chromium the test skips, except in CI
// (CI=true), where it fails.
func chromiumOptions(t *testing.T) []chromedp.ExecAllocatorOption {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v (.ci/run installs the chromium package)", chromiumPath, err)
		}
		t.Skipf("%s is missing: install the chromium package to run the browser tests", chromiumPath)
	}
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
}

// newBrowser starts headless Chromium for one test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	// The browser talks to 127.0.0.1 only, to a server whose CA it does
	// not know.
	opts := append(chromiumOptions(t), chromedp.Flag("ignore-certificate-errors", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); acancel() })
	// The first call starts the browser, which lives as long as its
	// context: no timeout there, only on the test's steps.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	ctx, tcancel := context.WithTimeout(bctx, 2*time.Minute)
	t.Cleanup(tcancel)
	return ctx
}

// artifactPath is where a test saves a file for people to look at:
// $P2PTLS_ARTIFACTS when set, the test's artifact directory with 'go test
// -artifacts', else a fixed place under the temporary directory that
// outlives the test (as in serve/management).
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("P2PTLS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "p2ptls-test-artifacts")
		if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
			dir = t.ArtifactDir()
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// TestUIBrowser drives the web UI in headless Chromium against a real serve
// whose state the command line prepared.
func TestUIBrowser(t *testing.T) {
	ctx := newBrowser(t)
	dir := filepath.Join(t.TempDir(), "state")
	addr, webAddr := freeAddr(t), freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr, "CF_TOKEN=cf-ui-test-token-0123456789abcdef"}
	must := func(args ...string) string {
		t.Helper()
		r := p2ptls(t, env, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %v: exit %d %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	must("listener", "add", "web", "--addr", webAddr)
	must("mapping", "add", "--listener", "web", "--host", "cli.example.test", "--self-signed")
	must("dns-credential", "add", "cf", "--api-token-env", "CF_TOKEN")
	startServe(t, env)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(must("admin", "token", "create", "browser", "--output", "json")), &created); err != nil || created.Token == "" {
		t.Fatalf("admin token create: %v", err)
	}
	base := "https://" + addr
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, page)
		}
	}
	text := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	cliIDs := func() string {
		t.Helper()
		var list []struct{ ID string }
		if err := json.Unmarshal([]byte(must("mapping", "list", "--output", "json")), &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return strings.Join(ids, ",")
	}

	// Sign in; the mapping the command line made is listed.
	run("sign in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`section[data-listener="web"] tr[data-id="cli-example-test"]`)),
	)
	if got := text(`document.querySelector('tr[data-id="cli-example-test"] .badge').textContent`); got != "valid" {
		t.Errorf("status badge of cli-example-test: %q", got)
	}
	if got := text(`document.querySelector('#user').textContent`); got != "browser" {
		t.Errorf("signed in as %q", got)
	}
	// Management TLS: mode, CA fingerprint, agent install lines.
	if got := text(`document.querySelector('#mgmt-mode').textContent`); got != "auto" {
		t.Errorf("management TLS mode %q", got)
	}
	if got := text(`document.querySelector('#mgmt-ca-fp').textContent`); len(got) < 64 {
		t.Errorf("CA fingerprint %q", got)
	}
	if got := text(`document.querySelector('#agent-env').textContent`); !strings.Contains(got, "MANAGEMENT_CA_PEM_BASE64=") {
		t.Errorf("agent env lines %q", got)
	}
	if got := text(`document.querySelector('#dns-rows tr[data-name="cf"]').textContent`); !strings.Contains(got, "cloudflare") || !strings.Contains(got, "…cdef") || strings.Contains(got, "0123456789") {
		t.Errorf("DNS credential row %q", got)
	}

	// The modal: a wildcard host forces DNS-01 and offers the credential.
	hosts := `#mapping-form textarea[name="hosts"]`
	run("wildcard in the modal",
		chromedp.Click(chromedp.CSS("#add-mapping")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.SendKeys(chromedp.CSS(hosts), "*.wild.example.test"),
		chromedp.Click(chromedp.CSS(`#mapping-form input[name="source"][value="acme"]`)),
		chromedp.WaitVisible(chromedp.CSS("#wildcard-note")),
		chromedp.WaitVisible(chromedp.CSS(`#mapping-form select[name="dns_credential"]`)),
	)
	if got := text(`document.querySelector('#mapping-form').challenge.value`); got != "dns-01" {
		t.Errorf("challenge for a wildcard: %q", got)
	}
	if got := text(`document.querySelector('#mapping-form').dns_credential.value`); got != "cf" {
		t.Errorf("DNS credential picker: %q", got)
	}
	// An API refusal is shown in the modal. (No ACME order is placed: this
	// test has no ACME server, and only 127.0.0.1 may be contacted.)
	clearHosts := func() { text(`(document.querySelector('#mapping-form').hosts.value = "")`) }
	clearHosts()
	run("refused mapping",
		chromedp.Click(chromedp.CSS(`#mapping-form input[name="source"][value="self-signed"]`)),
		chromedp.SendKeys(chromedp.CSS(hosts), "bad_host!.example.test"),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-error")),
	)
	if got := text(`document.querySelector('#mapping-error').textContent`); got == "" {
		t.Error("no inline error for a refused mapping")
	}
	if got := cliIDs(); got != "cli-example-test" {
		t.Errorf("mappings after a refused add: %s", got)
	}
	// A valid self-signed mapping is added, listed, and in the state at once.
	clearHosts()
	run("add mapping",
		chromedp.SendKeys(chromedp.CSS(hosts), "ui.example.test"),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="ui-example-test"]`)),
	)
	if got := cliIDs(); got != "cli-example-test,ui-example-test" {
		t.Errorf("mappings after the UI added one: %s", got)
	}

	// Certificate details.
	run("certificate details",
		chromedp.Click(chromedp.CSS(`tr[data-id="cli-example-test"] td.actions button`)),
		chromedp.WaitVisible(chromedp.CSS("#cert-dialog")),
		chromedp.WaitVisible(chromedp.CSS(`#cert-details dd[data-field="SHA-256 fingerprint"]`)),
	)
	details := text(`document.querySelector('#cert-details').textContent`)
	for _, want := range []string{"cli.example.test", "Serial", "Key type", "Issuer"} {
		if !strings.Contains(details, want) {
			t.Errorf("certificate details lack %q: %s", want, details)
		}
	}
	if fp := text(`document.querySelector('#cert-details dd[data-field="SHA-256 fingerprint"]').textContent`); len(fp) < 64 {
		t.Errorf("fingerprint %q", fp)
	}
	run("close details", chromedp.Click(chromedp.CSS(`#cert-dialog button[data-close]`)), chromedp.WaitNotVisible(chromedp.CSS("#cert-dialog")))

	// A handshake for a name no mapping covers gets the fallback, and the
	// page shows a red banner with the name.
	eventually(t, 10*time.Second, func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", webAddr,
			&tls.Config{ServerName: "unknown.example.test", InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		return conn.Close()
	})
	banner := ""
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		run("reload", chromedp.Click(chromedp.CSS("#reload")), chromedp.Sleep(500*time.Millisecond))
		banner = text(`(document.querySelector('section[data-listener="web"] .banner') || {}).textContent || ""`)
		if banner != "" {
			break
		}
	}
	if !strings.Contains(banner, "unknown.example.test: 1") {
		t.Errorf("fallback banner %q", banner)
	}

	// The screenshot of the TLS page.
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := artifactPath(t, "ui-tls-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the TLS page: %s", shot)

	// Remove, after confirmation.
	run("remove mapping",
		chromedp.Click(chromedp.CSS(`tr[data-id="ui-example-test"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-id="ui-example-test"]`)),
	)
	if got := cliIDs(); got != "cli-example-test" {
		t.Errorf("mappings after the UI removed one: %s", got)
	}

	// A change by the command line appears on the next page load.
	must("mapping", "add", "--listener", "web", "--host", "later.example.test", "--self-signed")
	run("reload page",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="later-example-test"]`)),
	)

	// Sign out: back to the sign-in page, and /ui/ needs a new sign-in.
	run("sign out",
		chromedp.Click(chromedp.CSS("#sign-out")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if url != base+"/ui/login" {
		t.Errorf("after sign-out /ui/ went to %s", url)
	}
	if t.Failed() {
		page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		fmt.Fprintln(os.Stderr, page)
	}
}
