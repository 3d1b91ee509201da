package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// TestUIBrowserWildcardDNS01 adds a wildcard+apex DNS-01 mapping with a
// Cloudflare credential through the modal and sees serve issue it against
// pebble.
func TestUIBrowserWildcardDNS01(t *testing.T) {
	ctx := newBrowser(t)
	web := freeAddr(t)
	acme := acmetest.Start(t, acmetest.Options{TLSPort: port(t, web),
		CFTokens: map[string]cftest.Perms{"cf-ui-token-0123456789": {ZoneRead: true, DNSEdit: true}}})
	p := newPublicState(t)
	p.env = append(p.env, "CF_TOKEN=cf-ui-token-0123456789", "P2PTLS_DNS_RESOLVERS="+acme.DNSResolver)
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", acme.DirectoryURL, "--ca-file", acme.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "dns-credential", "add", "cf", "--api-token-env", "CF_TOKEN", "--api-base-url", acme.Cloudflare.URL)
	p.serve = startServe(t, p.env)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "ui", "--output", "json")), &created); err != nil {
		t.Fatal(err)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	hosts := `#mapping-form textarea[name="hosts"]`
	run("sign in and add the mapping",
		chromedp.Navigate("https://"+p.mgmt+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#add-mapping")),
		chromedp.Click(chromedp.CSS("#add-mapping")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.SendKeys(chromedp.CSS(hosts), "*.example.test\nexample.test"),
		chromedp.Click(chromedp.CSS(`#mapping-form input[name="source"][value="acme"]`)),
		chromedp.WaitVisible(chromedp.CSS("#wildcard-note")),
		chromedp.WaitVisible(chromedp.CSS(`#mapping-form select[name="dns_credential"]`)),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="wildcard-example-test"]`)),
	)
	// serve issues the new mapping by itself; the page shows it valid.
	eventually(t, 60*time.Second, func() error {
		run("reload", chromedp.Click(chromedp.CSS("#reload")), chromedp.Sleep(300*time.Millisecond))
		badge, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('tr[data-id="wildcard-example-test"] .badge') || {}).textContent || ""`))
		if err != nil {
			return err
		}
		if badge != "valid" {
			return fmt.Errorf("status badge %q", badge)
		}
		return nil
	})
	a := &acmeState{publicServe: p, env: acme}
	a.mappingCertFile = func(id string) string { return filepath.Join(p.dir, "certs", "public", id, "cert.pem") }
	a.verifyIssued(t, "wildcard-example-test", "*.example.test", "example.test")
}
