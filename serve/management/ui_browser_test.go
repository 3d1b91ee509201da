package management

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// chromiumPath is Debian's Chromium, which .ci/run installs (as for the
// browser tests of cmd/p2ptls).
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium for one test; without it the test
// skips, except in CI (CI=true), where it fails.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v (.ci/run installs the chromium package)", chromiumPath, err)
		}
		t.Skipf("%s is missing: install the chromium package to run the browser tests", chromiumPath)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// 127.0.0.1 only, under a CA the browser does not know.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	ctx, tcancel := context.WithTimeout(bctx, 2*time.Minute)
	t.Cleanup(tcancel)
	return ctx
}

// TestUIShowsWhichMappingServesMeanwhile: a mapping whose list entry has
// served_by shows which wildcard mapping serves its hosts meanwhile; an
// unknown id is still named; a mapping without the field (older servers)
// shows nothing. The list is the real one, with served_by set by a
// test-only route in front of the API's.
func TestUIShowsWhichMappingServesMeanwhile(t *testing.T) {
	ctx := newBrowser(t)
	ta := newTestAPI(t)
	served := map[string]string{"shop": "wild", "upload": "gone-mapping"}
	routes := func(o *Options) {
		o.testRoutes = func(mux *http.ServeMux) {
			mux.HandleFunc("GET /api/v1/mappings", func(w http.ResponseWriter, r *http.Request) {
				cfg, err := state.LoadConfig(ctx, ta.store)
				if err != nil {
					t.Error(err)
					return
				}
				list, err := mappings.List(ctx, ta.store, cfg, "", time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := json.Marshal(list)
				var out []map[string]any
				json.Unmarshal(b, &out)
				for _, m := range out {
					if by, ok := served[m["id"].(string)]; ok {
						m["served_by"] = by
					}
				}
				writeJSON(w, http.StatusOK, out)
			})
		}
	}
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{}, routes)
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\n%s", what, err, page)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	step("sign in",
		chromedp.Navigate(ls.base+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), ta.token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="wild"]`)),
	)
	for id, want := range map[string]string{
		"shop":   "served meanwhile by *.example.com (mapping wild)",
		"upload": "served meanwhile by mapping gone-mapping",
		"wild":   "",
	} {
		got := eval(`(document.querySelector('tr[data-id="` + id + `"] .served-by') || {textContent: ""}).textContent`)
		if got != want {
			t.Errorf("mapping %s: served-by %q, want %q", id, got, want)
		}
	}
}
