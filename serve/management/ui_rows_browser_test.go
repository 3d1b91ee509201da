package management

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// artifactPath is where a test saves a file for people to look at (the
// screenshots): $P2PTLS_ARTIFACTS when set, the test's artifact directory
// with 'go test -artifacts', else p2ptls-test-artifacts under the
// temporary directory, which outlives the test.
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

// screenshot saves the whole page as name in the artifacts.
func (p *uiPage) screenshot(name string) {
	p.t.Helper()
	// Quality 100 is a PNG; below, a JPEG.
	p.saveShot(name, chromedp.FullScreenshot(100))
}

// saveShot saves the screenshot shot takes as name in the artifacts.
func (p *uiPage) saveShot(name string, shot chromedp.Action[[]byte]) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, shot)
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := artifactPath(p.t, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// A long error as an ACME server may give it, on several lines.
const (
	longError  = "fail.example.com: acme: error: 403 :: POST :: https://acme.example/acme/new-order :: urn:ietf:params:acme:error:unauthorized :: the client is not authorized to request a certificate for this name because the CAA record forbids it"
	errorLine2 = "\tcontext: CAA record for example.com names letsencrypt.org only"
)

// fiveMappings is newTestAPI's state plus an ACME mapping whose last
// three attempts failed with a long error and a file mapping, on a
// listener that refuses
// unknown names (fallback reject) with serve counting refused handshakes.
func fiveMappings(t *testing.T) *testAPI {
	t.Helper()
	status := &runstatus.Status{ServeRunning: true, PID: os.Getpid(), Listeners: []runstatus.Listener{
		{Name: "web", FallbackTotal: 1, FallbackHits: map[string]int64{"typo.example.com": 1}},
		{Name: "edge", FallbackTotal: 3, FallbackHits: map[string]int64{"": 2, "old.example.net": 1}},
	}}
	ta := newTestAPI(t, func(o *Options) { o.Status = func() *runstatus.Status { return status } })
	ctx := context.Background()
	if _, err := state.AddListener(ctx, ta.store, state.Listener{Name: "edge", Addr: "127.0.0.1:20443", Fallback: state.FallbackReject}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, _, err := mappings.Add(ctx, ta.store, mappings.Input{Mapping: state.Mapping{ID: "fail", Listener: "edge", Hosts: []string{"fail.example.com"},
		Source: state.SourceACME, Challenge: state.ChallengeHTTP01, KeyType: "ec384", Upstream: "http://127.0.0.1:9001"}}, now); err != nil {
		t.Fatal(err)
	}
	// A certificate the operator keeps in files of their own.
	kp := selfSigned(t, "files.example.com")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "files.crt"), filepath.Join(dir, "files.key")
	if err := os.WriteFile(certFile, kp.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, kp.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mappings.Add(ctx, ta.store, mappings.Input{Mapping: state.Mapping{ID: "files", Listener: "edge", Hosts: []string{"files.example.com"},
		Source: state.SourceFile, CertFile: certFile, KeyFile: keyFile}}, now); err != nil {
		t.Fatal(err)
	}
	if err := mappings.SaveMeta(ctx, ta.store, "fail", mappings.Meta{Source: state.SourceACME, LastAttemptAt: now.Add(-time.Hour),
		LastError: longError, LastErrorDetail: longError + "\n" + errorLine2, Attempts: 3,
		RetryAt: now.Add(2 * time.Hour), BackoffReason: mappings.BackoffFailed}); err != nil {
		t.Fatal(err)
	}
	return ta
}

// TestUIRowsAndDetails: a mapping's row says its state in one line per
// cell: a long error summarised (the whole text behind Details), dates
// that do not wrap with the timestamp as tooltip, the retry time and
// attempts of a failing ACME mapping, "replace before …" for what p2ptls
// cannot renew; the banner of a rejecting listener counts refused
// handshakes. Screenshots at 5 mappings, wide and 420 px.
func TestUIRowsAndDetails(t *testing.T) {
	ta := fiveMappings(t)
	p := openUI(t, ta)
	p.step("wide window", chromedp.EmulateViewport(1280, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#tls")))
	p.waitRows()
	fail := `tr[data-id="fail"]`
	cell := func(sel string) string {
		t.Helper()
		return p.eval(`document.querySelector('` + sel + `').textContent`)
	}
	summary := cell(fail + ` td.error`)
	if !strings.HasPrefix(summary, "fail.example.com: acme: error: 403") || !strings.Contains(summary, "…") || strings.Contains(summary, "context:") ||
		len([]rune(strings.SplitN(summary, "…", 2)[0])) > 101 {
		t.Errorf("error cell %q", summary)
	}
	for sel, want := range map[string]*regexp.Regexp{
		fail + ` .attempts`:                            regexp.MustCompile(`^3 failed attempts in a row$`),
		fail + ` .backoff`:                             regexp.MustCompile(`^retries from \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (1 hour|\d+ minutes)\)$`),
		`tr[data-id="shop"] td:nth-child(5)`:           regexp.MustCompile(`^in (89|90) days$`),
		`tr[data-id="shop"] td:nth-child(6)`:           regexp.MustCompile(`^in \d+ days$`),
		`tr[data-id="upload"] td:nth-child(6)`:         regexp.MustCompile(`^replace before \d{4}-\d\d-\d\d$`),
		`tr[data-id="files"] td:nth-child(6)`:          regexp.MustCompile(`^replace before \d{4}-\d\d-\d\d$`),
		`section[data-listener="edge"] .banner strong`: regexp.MustCompile(`^This listener refused 3 handshakes since serve started\.$`),
		`section[data-listener="web"] .banner strong`:  regexp.MustCompile(`^This listener served its fallback certificate 1 time since serve started\.$`),
	} {
		if got := cell(sel); !want.MatchString(got) {
			t.Errorf("%s: %q, want %s", sel, got, want)
		}
	}
	// Dates: the timestamp is the tooltip, and they do not wrap.
	if got := p.eval(`(e => e.title + "|" + getComputedStyle(e).whiteSpace)(document.querySelector('tr[data-id="shop"] td:nth-child(5) time'))`); !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d UTC\|nowrap$`).MatchString(got) {
		t.Errorf("expiry tooltip and wrapping: %q", got)
	}
	p.screenshot("ui-5-mappings.png")

	// Counts at the top and per listener; a count filters by its status.
	if got := cell("#tls-counts"); got != "5 mappings on 3 listeners: 1 failed · 1 pending" {
		t.Errorf("counts at the top: %q", got)
	}
	if got := cell(`section[data-listener="web"] .counts`); got != "3 mappings: 1 pending · 2 valid" {
		t.Errorf("counts of web: %q", got)
	}
	if got := cell(`section[data-listener="api"] .counts`); got != "" {
		t.Errorf("counts of api, which has no mapping: %q", got)
	}
	p.step("show the pending", chromedp.Click(chromedp.CSS(`section[data-listener="web"] .counts button[data-status="pending"]`)))
	p.waitJS("the pending row", `[...document.querySelectorAll('section[data-listener="web"] tbody tr')].map(r => r.dataset.id).join() === "wild" &&
		document.querySelector('section[data-listener="web"] select[name="status"]').value === "pending"`)

	// Details: the mapping's settings, attempts and retry, the whole error.
	p.step("details of fail",
		chromedp.Click(chromedp.CSS(fail+` button[aria-label="Details of fail"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#cert-details dd[data-field="Error detail"]`)),
	)
	for field, want := range map[string]string{
		"Upstream": "http://127.0.0.1:9001", "Challenge": "http-01", "Profile": "the CA's default", "Requested key type": "ec384",
		"Attempts": "3 failed attempts in a row", "Error detail": longError + "\n" + errorLine2,
	} {
		if got := cell(`#cert-details dd[data-field="` + field + `"]`); got != want {
			t.Errorf("details %s: %q, want %q", field, got, want)
		}
	}
	if got := cell(`#cert-details dd[data-field="Next attempt"]`); !strings.Contains(got, " UTC (in ") {
		t.Errorf("details, next attempt: %q", got)
	}
	p.step("close", chromedp.KeyEvent("\u001b"), chromedp.WaitNotVisible(chromedp.CSS("#cert-dialog")))

	// 420 px: no sideways page scroll, nor in the details of a certificate
	// (long fingerprint and names).
	p.step("narrow window", chromedp.EmulateViewport(420, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#tls")))
	p.waitRows()
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 420 {
		t.Errorf("at 420 px the page is %d px wide", w)
	}
	p.screenshot("ui-5-mappings-420px.png")
	p.step("details of upload at 420 px",
		chromedp.Click(chromedp.CSS(`tr[data-id="upload"] button[aria-label="Details of upload"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#cert-details dd[data-field="SHA-256 fingerprint"]`)),
	)
	// The chain: the link downloads what GET …/pem answers (no key); Copy
	// puts it on the clipboard, by the clipboard API or, when that is
	// refused, by the copy command.
	resp, want := p.ls.do("GET", "/api/v1/certificates/upload/pem", map[string]string{"Authorization": ta.bearer()}, "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(want, "-----BEGIN CERTIFICATE-----") || strings.Contains(want, "PRIVATE KEY") {
		t.Fatalf("GET …/pem: %d %q", resp.StatusCode, want)
	}
	if got := p.eval(`(a => a.getAttribute("href") + " " + a.download)(document.querySelector("#cert-pem-download"))`); got != "/api/v1/certificates/upload/pem upload.pem" {
		t.Errorf("download link %q", got)
	}
	if got := p.eval(`fetch(document.querySelector("#cert-pem-download").href).then(r => r.text())`); got != want {
		t.Errorf("the download link answers %q, want %q", got, want)
	}
	for _, write := range []browser.PermissionSetting{browser.PermissionSettingGranted, browser.PermissionSettingDenied} {
		for name, setting := range map[string]browser.PermissionSetting{"clipboard-read": browser.PermissionSettingGranted, "clipboard-write": write} {
			if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: name}, Setting: setting, Origin: p.base}); err != nil {
				t.Fatalf("set %s %s: %v", name, setting, err)
			}
		}
		p.eval(`navigator.clipboard.writeText("").then(() => "", () => "")`)
		p.step("copy, clipboard-write "+string(write), chromedp.Click(chromedp.CSS("#cert-pem-copy")))
		p.waitJS("copied", `document.querySelector("#cert-pem-status").textContent === "Copied the chain of upload (1 certificate)."`)
		if got := p.eval(`navigator.clipboard.readText()`); got != want {
			t.Errorf("clipboard-write %s: the clipboard holds %q", write, got)
		}
	}
	if got := p.eval(`(d => d.scrollWidth + " " + d.clientWidth)(document.querySelector("#cert-dialog"))`); func() bool {
		var sw, cw int
		_, err := fmt.Sscan(got, &sw, &cw)
		return err != nil || sw > cw
	}() {
		t.Errorf("the details dialog scrolls sideways: scrollWidth, clientWidth %s", got)
	}
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 420 {
		t.Errorf("at 420 px with the details open the page is %d px wide", w)
	}
	p.screenshot("ui-details-420px.png")
	p.step("close", chromedp.KeyEvent("\u001b"), chromedp.WaitNotVisible(chromedp.CSS("#cert-dialog")))
	p.step("edit at 420 px",
		chromedp.Click(chromedp.CSS(`tr[data-id="fail"] button[aria-label="Edit fail"]`)),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
	)
	if got := p.eval(`(d => d.scrollWidth + " " + d.clientWidth + " " + document.documentElement.scrollWidth)(document.querySelector("#mapping-dialog"))`); func() bool {
		var sw, cw, page int
		_, err := fmt.Sscan(got, &sw, &cw, &page)
		return err != nil || sw > cw || page > 420
	}() {
		t.Errorf("the modal at 420 px: scrollWidth, clientWidth, page width %s", got)
	}
	p.saveShot("ui-edit-420px.png", chromedp.CaptureScreenshot()) // the window: the modal is in it
}
