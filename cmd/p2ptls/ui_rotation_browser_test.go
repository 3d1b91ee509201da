package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/pki"
)

// TestUIRotationBrowser drives the management CA rotation through the
// web UI's Management TLS panel in headless Chromium against a real
// serve: start → switch → finish, then abort from started, checking the
// panel's text and the command line's view at each stage; a refused step
// and a bad overlap are shown as one alert line. The browser talks to the
// management listener whose certificate each step changes.
func TestUIRotationBrowser(t *testing.T) {
	ctx := newBrowser(t)
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	must := func(args ...string) string {
		t.Helper()
		r := p2ptls(t, env, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %v: exit %d %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	startServe(t, env)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(must("admin", "token", "create", "rotator", "--output", "json")), &created); err != nil || created.Token == "" {
		t.Fatalf("admin token create: %v", err)
	}
	// status is the command line's view of the rotation.
	type caDoc struct {
		FP string `json:"fingerprint_sha256"`
	}
	type statusDoc struct {
		Stage   string `json:"stage"`
		Current caDoc  `json:"current"`
		Next    *caDoc `json:"next"`
		Last    *struct {
			Outcome string `json:"outcome"`
		} `json:"last_rotation"`
	}
	status := func() statusDoc {
		t.Helper()
		var s statusDoc
		if err := json.Unmarshal([]byte(must("ca", "rotate", "status", "--output", "json")), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("#mgmt")))
			t.Fatalf("%s: %v\n%s", what, err, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+jsString(sel)+`) || {}).textContent || ""`))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	visible := func(sel string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const e = document.querySelector(`+jsString(sel)+`); return !!e && e.offsetParent !== null })()`))
		if err != nil {
			t.Fatalf("visibility of %s: %v", sel, err)
		}
		return ok
	}
	// buttons are the rotation buttons the panel shows.
	buttons := func() string {
		var shown []string
		for _, b := range []string{"start", "switch", "finish", "abort"} {
			if visible("#rotation-" + b) {
				shown = append(shown, b)
			}
		}
		return strings.Join(shown, ",")
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is a PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := artifactPath(t, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	stage := func(s string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(chromedp.CSS(`#rotation-stage[data-stage="` + s + `"]`))
	}
	notice := func(want string) {
		t.Helper()
		if got := text("#mgmt-notice"); !strings.Contains(got, want) || !visible("#mgmt-notice") {
			t.Errorf("notice %q, want %q", got, want)
		}
	}

	base := "https://" + addr
	run("sign in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		stage("none"),
	)
	before := status()
	oldFP := before.Current.FP
	if got := text("#rotation-current-fp"); got != oldFP || text("#mgmt-ca-fp") != oldFP {
		t.Errorf("panel's current CA %q, CLI says %s", got, oldFP)
	}
	if got := buttons(); got != "start" {
		t.Errorf("buttons with no rotation: %s", got)
	}
	if got := text("#download-ca"); got != "Download CA" {
		t.Errorf("download link %q", got)
	}

	// A bad overlap: one alert line, nothing started.
	run("bad overlap",
		chromedp.SetValue(chromedp.CSS("#rotation-overlap"), "soon"),
		chromedp.Click(chromedp.CSS("#rotation-start")),
		chromedp.WaitVisible(chromedp.CSS(`#mgmt-error[role="alert"]`)),
	)
	if got := text("#mgmt-error"); !strings.Contains(got, `overlap "soon" is not a positive duration`) || !strings.Contains(got, "30d") {
		t.Errorf("error for a bad overlap: %q", got)
	}
	if s := status(); s.Stage != "none" {
		t.Errorf("a refused start changed the stage to %s", s.Stage)
	}

	// Start, from the keyboard: Enter in the overlap field.
	run("start",
		chromedp.SetValue(chromedp.CSS("#rotation-overlap"), "14d"),
		chromedp.Focus(chromedp.CSS("#rotation-overlap")),
		chromedp.KeyEvent("\r"),
		stage("started"),
	)
	st := status()
	if st.Stage != "started" || st.Next == nil {
		t.Fatalf("CLI after the UI's start: %+v", st)
	}
	nextFP := st.Next.FP
	if visible("#mgmt-error") {
		t.Errorf("the error stayed after a step that worked: %q", text("#mgmt-error"))
	}
	notice("Rotation started")
	if got := text("#rotation-next-fp"); got != nextFP {
		t.Errorf("panel's next CA %q, CLI says %s", got, nextFP)
	}
	if got, want := text("#rotation-deadline"), time.Now().Add(14*24*time.Hour).UTC().Format("2006-01-02"); !strings.Contains(got, want) {
		t.Errorf("deadline %q, want %s", got, want)
	}
	agents := text("#rotation-agents tbody")
	for _, kind := range []string{"current-only", "bundle", "next-only", "MANAGEMENT_CA_FILE"} {
		if !strings.Contains(agents, kind) {
			t.Errorf("agent advice lacks %q: %s", kind, agents)
		}
	}
	if got := buttons(); got != "switch,abort" {
		t.Errorf("buttons at started: %s", got)
	}
	if got := text("#download-ca"); !strings.Contains(got, "bundle") {
		t.Errorf("download link during a rotation: %q", got)
	}
	if got := text("#rotation-stage"); !strings.Contains(got, "Give every agent the bundle") {
		t.Errorf("stage text at started: %q", got)
	}
	shot("ui-rotation-started.png")

	// Switch: serve now presents a certificate from the next CA on the
	// listener the browser is connected to; the UI keeps working.
	run("switch", chromedp.Click(chromedp.CSS("#rotation-switch")), stage("switched"))
	if s := status(); s.Stage != "switched" {
		t.Fatalf("CLI after the UI's switch: %+v", s)
	}
	notice("Switched")
	if got := text("#rotation-served-by"); got != "the next CA" {
		t.Errorf("served by %q after switch", got)
	}
	if got := buttons(); got != "finish,abort" {
		t.Errorf("buttons at switched: %s", got)
	}
	// serve picked the switch up: the leaf is from the next CA.
	nextPEM, err := os.ReadFile(filepath.Join(dir, "certs", "management", "next", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	nextCerts, err := pki.ParseCertChain(nextPEM)
	if err != nil {
		t.Fatal(err)
	}
	nextRoots := x509.NewCertPool()
	nextRoots.AddCert(nextCerts[0])
	eventually(t, 10*time.Second, func() error {
		leaf, err := handshake(addr, "localhost", nextRoots)
		if err != nil {
			return err
		}
		return leaf.CheckSignatureFrom(nextCerts[0])
	})
	run("reload after switch", chromedp.Reload(), stage("switched"),
		chromedp.WaitVisible(chromedp.CSS("#serve-state")))
	if visible("#page-error") || visible("#mgmt-error") {
		t.Errorf("errors after a reload across switch: %q %q", text("#page-error"), text("#mgmt-error"))
	}
	shot("ui-rotation-switched.png")

	// Finish asks first; cancelling changes nothing.
	run("finish, cancelled",
		chromedp.Click(chromedp.CSS("#rotation-finish")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
	)
	if got := text("#confirm-text"); !strings.Contains(got, "Finish the rotation?") || text("#confirm-yes") != "Finish rotation" {
		t.Errorf("finish confirmation %q / %q", got, text("#confirm-yes"))
	}
	run("cancel", chromedp.Click(chromedp.CSS(`#confirm-dialog button[data-close]`)), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	if s := status(); s.Stage != "switched" {
		t.Fatalf("a cancelled finish changed the stage to %s", s.Stage)
	}
	run("finish",
		chromedp.Click(chromedp.CSS("#rotation-finish")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		stage("none"),
	)
	if s := status(); s.Stage != "none" || s.Current.FP != nextFP || s.Last == nil || s.Last.Outcome != "finished" {
		t.Fatalf("CLI after the UI's finish: %+v", s)
	}
	notice("Rotation finished")
	if got := text("#rotation-current-fp"); got != nextFP || text("#mgmt-ca-fp") != nextFP {
		t.Errorf("panel's CA after finish %q, want %s", got, nextFP)
	}
	if got := text("#rotation-last"); !strings.Contains(got, "finished") {
		t.Errorf("last rotation %q", got)
	}
	if got := buttons(); got != "start" {
		t.Errorf("buttons after finish: %s", got)
	}
	shot("ui-rotation-finished.png")

	// Abort from started, after a confirmation.
	run("start again", chromedp.SetValue(chromedp.CSS("#rotation-overlap"), "30d"), chromedp.Click(chromedp.CSS("#rotation-start")), stage("started"))
	run("abort",
		chromedp.Click(chromedp.CSS("#rotation-abort")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		stage("none"),
	)
	if s := status(); s.Stage != "none" || s.Current.FP != nextFP || s.Last == nil || s.Last.Outcome != "aborted" {
		t.Fatalf("CLI after the UI's abort: %+v", s)
	}
	notice("Rotation aborted")
	if got := text("#rotation-last"); !strings.Contains(got, "aborted") {
		t.Errorf("last rotation %q", got)
	}
	shot("ui-rotation-aborted.png")

	// A page left at started while the command line aborted: the UI's
	// switch is refused with one alert line that names the API's way on.
	run("start for a stale page", chromedp.Click(chromedp.CSS("#rotation-start")), stage("started"))
	must("ca", "rotate", "abort")
	run("stale switch", chromedp.Click(chromedp.CSS("#rotation-switch")), chromedp.WaitVisible(chromedp.CSS(`#mgmt-error[role="alert"]`)))
	if got := text("#mgmt-error"); !strings.Contains(got, "no management CA rotation is open") ||
		!strings.Contains(got, "POST /api/v1/management/rotation/start") || strings.Contains(got, "\n") {
		t.Errorf("error of a stale switch: %q", got)
	}
	if s := status(); s.Stage != "none" {
		t.Errorf("a refused switch changed the stage to %s", s.Stage)
	}
	// The panel shows the stage as it is now, the error kept above it.
	run("panel after the refusal", stage("none"))
	if got := buttons(); got != "start" || !visible("#mgmt-error") {
		t.Errorf("after a refused switch: buttons %s, error shown %v", got, visible("#mgmt-error"))
	}
	shot("ui-rotation-refused.png")

	// A rotation record broken by hand: the panel says so in one alert
	// line and the rest of the page works.
	if err := os.WriteFile(filepath.Join(dir, "certs", "management", "rotation.toml"), []byte("stage = [broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("reload with a damaged record", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#mgmt-error[role="alert"]`)))
	if got := text("#mgmt-error"); !strings.Contains(got, "rotation.toml") || !strings.Contains(got, "damaged") {
		t.Errorf("error for a damaged rotation record: %q", got)
	}
	if visible("#rotation") || visible("#page-error") || !strings.Contains(text("#serve-state"), "serve is running") {
		t.Errorf("with a damaged rotation record: rotation shown %v, page error %q, serve state %q",
			visible("#rotation"), text("#page-error"), text("#serve-state"))
	}
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
