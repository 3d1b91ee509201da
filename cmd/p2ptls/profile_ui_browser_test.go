package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// TestUIBrowserACMEProfile adds an ACME mapping with a profile through the
// Add mapping form: the form names the profiles the CA offers (GET
// /api/v1/acme/profiles), a profile it does not offer is refused in the
// form, and the shortlived one gets a 6-day certificate from serve.
func TestUIBrowserACMEProfile(t *testing.T) {
	ctx := newBrowser(t)
	web, plain := freeAddr(t), freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web), Profiles: true})
	p := newPublicState(t)
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
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
	text := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	profile := `#mapping-form input[name="profile"]`
	run("sign in and fill the form",
		chromedp.Navigate("https://"+p.mgmt+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#add-mapping")),
		chromedp.Click(chromedp.CSS("#add-mapping")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.SendKeys(chromedp.CSS(`#mapping-form textarea[name="hosts"]`), "short-ui.example.test"),
		chromedp.SendKeys(chromedp.CSS(`#mapping-form input[name="id"]`), "short-ui"),
		chromedp.Click(chromedp.CSS(`#mapping-form input[name="source"][value="acme"]`)),
		chromedp.WaitVisible(chromedp.CSS("#profile-note")),
		chromedp.SendKeys(chromedp.CSS(profile), "tlsserver"),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-error")),
	)
	if note := text(`document.querySelector("#profile-note").textContent`); note != "The CA offers: default, shortlived." {
		t.Errorf("profile note %q", note)
	}
	if opts := text(`[...document.querySelectorAll("#profile-list option")].map(o => o.value).join(",")`); opts != "default,shortlived" {
		t.Errorf("profile suggestions %q", opts)
	}
	if msg := text(`document.querySelector("#mapping-error").textContent`); !strings.Contains(msg, `offers no profile "tlsserver"; it offers default, shortlived`) {
		t.Errorf("refusal shown %q", msg)
	}
	run("add it with shortlived",
		chromedp.SetValue(chromedp.CSS(profile), "shortlived"),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="short-ui"]`)),
	)
	eventually(t, 60*time.Second, func() error {
		run("reload", chromedp.Click(chromedp.CSS("#reload")), chromedp.Sleep(300*time.Millisecond))
		if badge := text(`(document.querySelector('tr[data-id="short-ui"] .badge') || {}).textContent || ""`); badge != "valid" {
			return fmt.Errorf("status badge %q", badge)
		}
		return nil
	})
	chain, err := pki.ParseCertChain(mustRead(t, filepath.Join(p.dir, "certs", "public", "short-ui", "cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > 7*24*time.Hour {
		t.Errorf("the form's shortlived profile gave a %v certificate", life)
	}
}
