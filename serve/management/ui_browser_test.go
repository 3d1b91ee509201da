package management

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

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

// uiPage is one signed-in browser tab on a live management server.
type uiPage struct {
	t    *testing.T
	ctx  context.Context
	ls   *liveServer
	base string
}

// openUI starts Chromium, serves ta's state live (opts change its
// Options) and signs in; the page shows the TLS section once every
// listener's first rows are rendered.
func openUI(t *testing.T, ta *testAPI, opts ...func(*Options)) *uiPage {
	t.Helper()
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{}, opts...)
	// The browser after the server: cleanups run last first, so the
	// browser and its connections are gone before the server shuts down
	// (a request the page still had in flight made that wait).
	ctx := newBrowser(t)
	p := &uiPage{t: t, ctx: ctx, ls: ls, base: ls.base}
	p.step("sign in",
		chromedp.Navigate(ls.base+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), ta.token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#tls")),
	)
	p.waitRows()
	return p
}

// waitRows waits until the page marked its first rows rendered.
func (p *uiPage) waitRows() {
	p.t.Helper()
	p.waitJS("first rows", `performance.getEntriesByName("p2ptls:rows").length > 0`)
}

// step runs steps within 30 s; on failure the test stops with the page.
func (p *uiPage) step(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	sctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		page, _ := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		p.t.Fatalf("%s: %v\n%s", what, err, page)
	}
}

// eval evaluates a JavaScript expression; its value is decoded as T.
func evalJS[T any](p *uiPage, js string) T {
	p.t.Helper()
	sctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (p *uiPage) eval(js string) string { p.t.Helper(); return evalJS[string](p, js) }

// waitJS polls until the expression is true, for at most 30 s.
func (p *uiPage) waitJS(what, js string) {
	p.t.Helper()
	p.step(what, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond)))
}

// TestUIShowsWhichMappingServesMeanwhile: a mapping whose list entry has
// served_by shows which wildcard mapping serves its hosts meanwhile; an
// unknown id is still named; a mapping without the field (older servers)
// shows nothing. The list is the real one, with served_by set by a
// test-only route in front of the API's.
func TestUIShowsWhichMappingServesMeanwhile(t *testing.T) {
	ta := newTestAPI(t)
	served := map[string]string{"shop": "wild", "upload": "gone-mapping"}
	routes := func(o *Options) {
		o.testRoutes = func(mux *http.ServeMux) {
			mux.HandleFunc("GET /api/v1/mappings", func(w http.ResponseWriter, r *http.Request) {
				cfg, err := state.LoadConfig(r.Context(), ta.store)
				if err != nil {
					t.Error(err)
					return
				}
				page, err := mappings.ListPage(r.Context(), ta.store, cfg, mappings.PageQuery{Filter: mappings.PageFilter{Listener: r.URL.Query().Get("listener")}, Limit: 100}, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := json.Marshal(page.Items)
				var out []map[string]any
				json.Unmarshal(b, &out)
				for _, m := range out {
					if by, ok := served[m["id"].(string)]; ok {
						m["served_by"] = by
					}
				}
				writeJSON(w, http.StatusOK, map[string]any{"items": out, "next_cursor": ""})
			})
		}
	}
	p := openUI(t, ta, routes)
	for id, want := range map[string]string{
		"shop":   "served meanwhile by *.example.com (mapping wild)",
		"upload": "served meanwhile by mapping gone-mapping",
		"wild":   "",
	} {
		got := p.eval(`(document.querySelector('tr[data-id="` + id + `"] .served-by') || {textContent: ""}).textContent`)
		if got != want {
			t.Errorf("mapping %s: served-by %q, want %q", id, got, want)
		}
	}
}

// importSelfSigned adds n self-signed mappings id prefix000000… with hosts
// id.example.org on listener l, through "mapping import".
func importSelfSigned(t *testing.T, ta *testAPI, l, prefix string, n int) {
	t.Helper()
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, `{"listener":%q,"hosts":["%s%06d.example.org"],"id":"%s%06d","source":"self-signed","days":90}`+"\n", l, prefix, i, prefix, i)
	}
	added, _, err := mappings.Import(context.Background(), ta.store, &in, "test", time.Now())
	if err != nil || len(added) != n {
		t.Fatalf("import: %d added, %v", len(added), err)
	}
}

// TestUISearchFilterAndPaging: each listener's table is the paged API's:
// 100 rows and "Load more" to the end, a search by host or id, a status
// filter, the count of what is shown; a search answered late never
// replaces a newer one.
func TestUISearchFilterAndPaging(t *testing.T) {
	ta := newTestAPI(t)
	importSelfSigned(t, ta, "api", "m", 250)
	// q=m0001 is held until the browser gives up on it (a newer search
	// aborts it), then answered; every other listing goes to the real API.
	inner := newHandler(t.Context(), ta.o)
	held, aborted := make(chan struct{}, 1), make(chan struct{}, 1)
	routes := func(o *Options) {
		o.testRoutes = func(mux *http.ServeMux) {
			mux.HandleFunc("GET /api/v1/mappings", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("q") == "m0001" {
					held <- struct{}{}
					select {
					case <-r.Context().Done():
						aborted <- struct{}{}
					case <-time.After(20 * time.Second):
					}
				}
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", ta.bearer())
				inner.ServeHTTP(w, r)
			})
		}
	}
	p := openUI(t, ta, routes)
	api := `section[data-listener="api"]`
	rows := func(sec string) int {
		t.Helper()
		return evalJS[int](p, `document.querySelectorAll('section[data-listener="`+sec+`"] tbody tr').length`)
	}
	info := func(sec string) string {
		t.Helper()
		return p.eval(`document.querySelector('section[data-listener="` + sec + `"] .page-info').textContent`)
	}
	if n, got := rows("api"), info("api"); n != 100 || got != "Showing 100 of 250 mappings; more to load." {
		t.Errorf("first page: %d rows, %q", n, got)
	}
	if n, got := rows("web"), info("web"); n != 3 || got != "Showing 3 mappings." {
		t.Errorf("listener web: %d rows, %q", n, got)
	}
	for want := 200; want <= 300; want += 100 {
		p.step("load more", chromedp.Click(chromedp.CSS(api+" .load-more")))
		p.waitJS("the next page", `document.querySelectorAll('`+api+` tbody tr').length === `+fmt.Sprint(min(want, 250)))
	}
	if got := info("api"); got != "Showing 250 mappings." {
		t.Errorf("after the last page: %q", got)
	}
	if hidden := evalJS[bool](p, `document.querySelector('`+api+` .load-more').hidden`); !hidden {
		t.Error("Load more is offered after the last page")
	}
	// The last row is the last mapping: pages follow one another.
	if got := p.eval(`[...document.querySelectorAll('` + api + ` tbody tr')].at(-1).dataset.id`); got != "m000249" {
		t.Errorf("last row %s", got)
	}

	// Search by host: "m0001" is held, "m00012" typed on answers first; the
	// held listing is aborted and the rows stay those of m00012.
	search := api + ` input[type="search"]`
	p.step("type a search", chromedp.SendKeys(chromedp.CSS(search), "m0001"))
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the search m0001 was not sent")
	}
	p.step("type on", chromedp.SendKeys(chromedp.CSS(search), "2"))
	p.waitJS("rows of m00012", `document.querySelector('`+api+` .page-info').textContent === "Showing 10 mappings that match."`)
	select {
	case <-aborted:
	case <-time.After(20 * time.Second):
		t.Fatal("the older search was not aborted")
	}
	ids := p.eval(`[...document.querySelectorAll('` + api + ` tbody tr')].map(r => r.dataset.id).join(",")`)
	if want := "m000120,m000121,m000122,m000123,m000124,m000125,m000126,m000127,m000128,m000129"; ids != want {
		t.Errorf("rows for m00012: %s", ids)
	}
	// By id, any case; no match says so.
	clear := func() { p.eval(`document.querySelector('` + search + `').value = ""`) }
	clear()
	p.step("search by id", chromedp.SendKeys(chromedp.CSS(search), "M000249\r"))
	p.waitJS("one row", `document.querySelector('`+api+` .page-info').textContent === "Showing 1 mapping that matches."`)
	clear()
	p.step("search nothing", chromedp.SendKeys(chromedp.CSS(search), "nothing-like-this\r"))
	p.waitJS("no row", `document.querySelector('`+api+` .page-info').textContent === "No mapping matches."`)

	// Status filter on listener web: wild is pending, shop and upload valid.
	status := `section[data-listener="web"] select[name="status"]`
	p.step("status pending", chromedp.SetValue(chromedp.CSS(status), "pending"))
	p.eval(`document.querySelector('` + status + `').dispatchEvent(new Event("change")), ""`)
	p.waitJS("pending rows", `document.querySelector('section[data-listener="web"] .page-info').textContent === "Showing 1 mapping that matches."`)
	if got := p.eval(`document.querySelector('section[data-listener="web"] tbody tr').dataset.id`); got != "wild" {
		t.Errorf("pending: %s", got)
	}
	// Source filter, with the status filter back to any.
	p.eval(`(s => { s.value = ""; s.dispatchEvent(new Event("change")); })(document.querySelector('` + status + `')), ""`)
	p.eval(`(s => { s.value = "manual"; s.dispatchEvent(new Event("change")); })(document.querySelector('section[data-listener="web"] select[name="source"]')), ""`)
	p.waitJS("manual rows", `document.querySelector('section[data-listener="web"] tbody tr[data-id="upload"]') && document.querySelector('section[data-listener="web"] .page-info').textContent === "Showing 1 mapping that matches."`)
}

// recordBodies puts a route for pattern in front of the API that records
// each request's body and passes the request on to the real API.
func recordBodies(ta *testAPI, pattern string, bodies chan<- string) func(*Options) {
	inner := newHandler(ta.t.Context(), ta.o)
	return func(o *Options) {
		o.testRoutes = func(mux *http.ServeMux) {
			mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					ta.t.Errorf("read %s: %v", pattern, err)
				}
				select {
				case bodies <- string(b):
				default:
					ta.t.Errorf("%s: more requests than the test expects", pattern)
				}
				r = r.Clone(r.Context())
				r.Body = io.NopCloser(bytes.NewReader(b))
				r.Header.Set("Authorization", ta.bearer())
				inner.ServeHTTP(w, r)
			})
		}
	}
}

// mappingOf is mapping id in the state.
func mappingOf(t *testing.T, ta *testAPI, id string) state.Mapping {
	t.Helper()
	cfg, err := state.LoadConfig(context.Background(), ta.store)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Mappings {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("mapping %s is not in the state", id)
	return state.Mapping{}
}

// TestUIEditMapping: the Add modal edits a mapping: what cannot change in
// place is shown, not editable; PATCH carries only the changed fields; a
// refusal is an alert in the modal, which stays open, and changes nothing.
func TestUIEditMapping(t *testing.T) {
	ta := newTestAPI(t)
	bodies := make(chan string, 10)
	p := openUI(t, ta, recordBodies(ta, "PATCH /api/v1/mappings/{id}", bodies))
	form := `#mapping-form `
	p.step("edit shop",
		chromedp.Click(chromedp.CSS(`tr[data-id="shop"] button[data-action="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
	)
	if got := p.eval(`[document.querySelector("#mapping-title").textContent, document.querySelector("#mapping-submit").textContent,
		document.querySelector('` + form + `select[name="listener"]').disabled, document.querySelector('` + form + `input[name="id"]').disabled,
		document.querySelector('` + form + `input[name="id"]').value, document.querySelector('` + form + `textarea[name="hosts"]').value].join("|")`); got != "Edit mapping shop|Save|true|true|shop|shop.example.com" {
		t.Errorf("the modal as opened: %s", got)
	}
	setField := func(name, value string) {
		t.Helper()
		p.eval(`document.querySelector('` + form + `[name="` + name + `"]').value = ` + strconv.Quote(value))
	}
	// A host that another mapping has: refused in the modal.
	setField("hosts", "upload.example.com")
	p.step("save a taken host", chromedp.Click(chromedp.CSS("#mapping-submit")), chromedp.WaitVisible(chromedp.CSS(`#mapping-error[role="alert"]`)))
	if b := <-bodies; b != `{"hosts":["upload.example.com"]}` {
		t.Errorf("PATCH body %s", b)
	}
	if msg := p.eval(`document.querySelector("#mapping-error").textContent`); !strings.Contains(msg, "upload.example.com") {
		t.Errorf("modal error %q", msg)
	}
	if open := evalJS[bool](p, `document.querySelector("#mapping-dialog").open`); !open {
		t.Error("the modal closed on a refusal")
	}
	if m := mappingOf(t, ta, "shop"); strings.Join(m.Hosts, ",") != "shop.example.com" || m.Upstream != "" {
		t.Errorf("after a refused edit: %+v", m)
	}
	// New hosts and an upstream: saved, the row changed and marked.
	setField("hosts", "shop2.example.com\nshop3.example.com")
	setField("upstream", "http://127.0.0.1:9099")
	p.step("save", chromedp.Click(chromedp.CSS("#mapping-submit")), chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")))
	if b := <-bodies; b != `{"hosts":["shop2.example.com","shop3.example.com"],"upstream":"http://127.0.0.1:9099"}` {
		t.Errorf("PATCH body %s", b)
	}
	if m := mappingOf(t, ta, "shop"); strings.Join(m.Hosts, ",") != "shop2.example.com,shop3.example.com" || m.Upstream != "http://127.0.0.1:9099" {
		t.Errorf("after the edit: %+v", m)
	}
	p.waitJS("the changed row", `document.querySelector('tr[data-id="shop"].changed td.hosts').textContent === "shop2.example.com, shop3.example.com"`)
	if got := p.eval(`document.querySelector("#action-notice").textContent`); got != "Saved mapping shop (hosts, upstream)." {
		t.Errorf("notice %q", got)
	}
	// An ACME mapping: only the credential changes; key type and
	// challenge, shown as they are, are not sent.
	p.step("edit wild",
		chromedp.Click(chromedp.CSS(`tr[data-id="wild"] button[data-action="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
	)
	if got := p.eval(`[...new FormData(document.querySelector("#mapping-form"))].filter(([k]) => ["challenge", "dns_credential", "key_type"].includes(k)).map(([k, v]) => k + "=" + v).join(",")`); got != "challenge=dns-01,dns_credential=cf,key_type=ec256" {
		t.Errorf("ACME fields as opened: %s", got)
	}
	setField("dns_credential", "spare")
	p.step("save wild", chromedp.Click(chromedp.CSS("#mapping-submit")), chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")))
	if b := <-bodies; b != `{"dns_credential":"spare"}` {
		t.Errorf("PATCH body %s", b)
	}
	if m := mappingOf(t, ta, "wild"); m.DNSCredential != "spare" || m.Challenge != state.ChallengeDNS01 {
		t.Errorf("wild after the edit: %+v", m)
	}
	p.waitJS("the changed row", `document.querySelector('tr[data-id="wild"].changed') && !document.querySelector('tr[data-id="shop"].changed')`)
	// Nothing changed: no PATCH, and the notice says so.
	p.step("save unchanged",
		chromedp.Click(chromedp.CSS(`tr[data-id="upload"] button[data-action="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")),
	)
	if got := p.eval(`document.querySelector("#action-notice").textContent`); got != "Nothing to save: mapping upload is unchanged." {
		t.Errorf("notice %q", got)
	}
	if len(bodies) != 0 {
		t.Errorf("an unchanged mapping was sent: %s", <-bodies)
	}
}

// inView is JavaScript true when the row of mapping id is inside the
// window.
func inView(id string) string {
	return `(r => r.top >= 0 && r.bottom <= innerHeight)(document.querySelector('tr[data-id="` + id + `"]').getBoundingClientRect())`
}

// TestUIFeedbackAfterActions: add, regenerate and remove each end with a
// notice (role status); the added or changed row is marked and scrolled
// into view; after a remove the focus goes to the next row.
func TestUIFeedbackAfterActions(t *testing.T) {
	ta := newTestAPI(t)
	importSelfSigned(t, ta, "api", "m", 150) // listener api below web, 100 rows long
	p := openUI(t, ta)
	notice := func() string {
		t.Helper()
		return p.eval(`document.querySelector('#action-notice[role="status"]').textContent`)
	}
	p.eval(`scrollTo(0, document.body.scrollHeight), ""`)
	p.step("add",
		chromedp.Click(chromedp.CSS("#add-mapping")),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.SendKeys(chromedp.CSS(`#mapping-form textarea[name="hosts"]`), "new.example.com"),
		chromedp.Click(chromedp.CSS("#mapping-submit")),
		chromedp.WaitVisible(chromedp.CSS(`section[data-listener="web"] tr[data-id="new-example-com"].changed`)),
	)
	if got := notice(); got != "Added mapping new-example-com (new.example.com)." {
		t.Errorf("notice after add: %q", got)
	}
	if !evalJS[bool](p, inView("new-example-com")) {
		t.Error("the added row is not scrolled into view")
	}
	if m := mappingOf(t, ta, "new-example-com"); m.Listener != "web" || m.Source != state.SourceSelfSigned {
		t.Errorf("added %+v", m)
	}

	p.eval(`scrollTo(0, document.body.scrollHeight), ""`)
	before := evalJS[string](p, `document.querySelector('tr[data-id="m000042"] td:nth-child(5) time').dateTime`)
	p.step("regenerate",
		chromedp.Click(chromedp.CSS(`tr[data-id="m000042"] td.actions button:not(.secondary):not(.danger)`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="m000042"].changed`)),
	)
	if got := notice(); got != "Regenerated the certificate of m000042." {
		t.Errorf("notice after regenerate: %q", got)
	}
	if !evalJS[bool](p, inView("m000042")) {
		t.Error("the regenerated row is not in view")
	}
	if evalJS[int](p, `document.querySelectorAll("tr.changed").length`) != 1 {
		t.Error("more than the last changed row is marked")
	}
	if after := evalJS[string](p, `document.querySelector('tr[data-id="m000042"] td:nth-child(5) time').dateTime`); after == before {
		t.Errorf("the row still shows the old expiry %s", after)
	}

	p.step("remove",
		chromedp.Click(chromedp.CSS(`tr[data-id="m000042"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-id="m000042"]`)),
	)
	p.waitJS("focus on the next row", `document.activeElement.closest('tr[data-id="m000043"]') !== null`)
	if got := notice(); got != "Removed mapping m000042 (m000042.example.org)." {
		t.Errorf("notice after remove: %q", got)
	}
	cfg, err := state.LoadConfig(context.Background(), ta.store)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Mappings {
		if m.ID == "m000042" {
			t.Error("m000042 is still in the state")
		}
	}
	// A failed issue is an alert naming the action, with the API's error
	// and hint; the row stays.
	p.step("issue without an ACME account",
		chromedp.Click(chromedp.CSS(`tr[data-id="wild"] button[aria-label="Issue/renew now wild"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#action-error [role="alert"]`)),
	)
	if got := p.eval(`document.querySelector("#action-error-text").textContent`); !strings.HasPrefix(got, "Issue/renew now wild: ") || !strings.Contains(got, "ACME account") {
		t.Errorf("alert after a failed issue: %q", got)
	}
	p.waitJS("the row after the failed issue", `document.querySelector('tr[data-id="wild"] button[aria-label="Issue/renew now wild"]').textContent === "Issue/renew now"`)
	p.step("dismiss", chromedp.Click(chromedp.CSS("#action-error-close")), chromedp.WaitNotVisible(chromedp.CSS("#action-error")))

	// A refusal is an alert, and the notice of the last success goes.
	if _, err := mappings.Remove(context.Background(), ta.store, "m000043"); err != nil {
		t.Fatal(err)
	}
	p.step("remove one gone meanwhile",
		chromedp.Click(chromedp.CSS(`tr[data-id="m000043"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.WaitVisible(chromedp.CSS(`#action-error [role="alert"]`)),
	)
	if got := p.eval(`document.querySelector("#action-error").textContent`); !strings.Contains(got, "Remove m000043: ") || !strings.Contains(got, "m000043") {
		t.Errorf("alert %q", got)
	}
	if got := notice(); got != "" && evalJS[bool](p, `document.querySelector("#action-notice").checkVisibility()`) {
		t.Errorf("the old notice is still shown: %q", got)
	}
}

// TestUIKeyboardOnly: the page works by keyboard alone: Tab reaches the
// controls, Enter and Space press them, the modal keeps the focus, Escape
// closes it and the focus returns to what opened it.
func TestUIKeyboardOnly(t *testing.T) {
	ta := newTestAPI(t)
	p := openUI(t, ta)
	active := `(e => e.id || e.getAttribute("aria-label") || e.name || e.tagName)(document.activeElement)`
	focused := func(sel string) bool {
		t.Helper()
		return evalJS[bool](p, `document.activeElement === document.querySelector(`+strconv.Quote(sel)+`)`)
	}
	tab := chromedp.KeyEvent(kb.Tab)
	backTab := chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift))
	// tabTo presses Tab until sel has the focus, at most 100 times.
	tabTo := func(sel string) {
		t.Helper()
		for range 100 {
			if focused(sel) {
				return
			}
			p.step("Tab", tab)
		}
		t.Fatalf("Tab never reached %s (the focus is on %s)", sel, p.eval(active))
	}
	inModal := func(d string) {
		t.Helper()
		if !evalJS[bool](p, `document.querySelector("`+d+`").contains(document.activeElement)`) {
			t.Fatalf("the focus left %s: %s", d, p.eval(active))
		}
	}

	tabTo("#add-mapping")
	p.step("Enter on Add mapping", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")))
	inModal("#mapping-dialog")
	seen := map[string]bool{}
	for range 25 {
		p.step("Tab in the modal", tab)
		inModal("#mapping-dialog")
		seen[p.eval(active)] = true
	}
	for range 5 {
		p.step("Shift+Tab in the modal", backTab)
		inModal("#mapping-dialog")
	}
	if !seen["mapping-submit"] || !seen["hosts"] {
		t.Errorf("Tab in the modal did not come round its controls: %v", seen)
	}
	p.step("Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")))
	if !focused("#add-mapping") {
		t.Errorf("after Escape the focus is on %s", p.eval(active))
	}

	// Edit by keyboard: Space opens, Enter in a field saves.
	edit := `tr[data-id="shop"] button[data-action="edit"]`
	tabTo(edit)
	p.step("Space on Edit", chromedp.KeyEvent(" "), chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")))
	tabTo(`#mapping-form input[name="upstream"]`)
	p.step("type and Enter", chromedp.KeyEvent("http://127.0.0.1:9098"+kb.Enter), chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")))
	if m := mappingOf(t, ta, "shop"); m.Upstream != "http://127.0.0.1:9098" {
		t.Errorf("upstream after the keyboard edit: %q", m.Upstream)
	}
	p.waitJS("focus on the new row's Edit", `document.activeElement === document.querySelector('`+edit+`')`)

	// Details: Shift+Tab from Edit, Enter, Escape, back on Details.
	p.step("Shift+Tab to Details", backTab)
	details := `tr[data-id="shop"] button[aria-label="Details of shop"]`
	if !focused(details) {
		t.Fatalf("Shift+Tab from Edit went to %s", p.eval(active))
	}
	p.step("Enter on Details", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#cert-dialog")))
	inModal("#cert-dialog")
	p.step("Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#cert-dialog")))
	if !focused(details) {
		t.Errorf("after Escape the focus is on %s", p.eval(active))
	}

	// Search: typed, the rows follow.
	search := `section[data-listener="web"] input[type="search"]`
	tabTo(search)
	p.step("type a search", chromedp.KeyEvent("upl"))
	p.waitJS("rows of upl", `[...document.querySelectorAll('section[data-listener="web"] tbody tr')].map(r => r.dataset.id).join() === "upload"`)
}

// TestUIControlsAreLabelled: every control of the page has an accessible
// name, every column header a scope, and error lines are alerts.
func TestUIControlsAreLabelled(t *testing.T) {
	ta := newTestAPI(t)
	p := openUI(t, ta)
	unnamed := p.eval(`[...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
		.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby") && e.textContent.trim() === "")
		.map(e => e.outerHTML).join("\n")`)
	if unnamed != "" {
		t.Errorf("controls without a name:\n%s", unnamed)
	}
	if got := p.eval(`[...document.querySelectorAll("th:not([scope])")].map(e => e.outerHTML).join("\n")`); got != "" {
		t.Errorf("headers without scope:\n%s", got)
	}
	if got := p.eval(`[...document.querySelectorAll(".error[id], .form-error")].filter(e => e.getAttribute("role") !== "alert").map(e => e.outerHTML).join("\n")`); got != "" {
		t.Errorf("error lines that are not alerts:\n%s", got)
	}
}
