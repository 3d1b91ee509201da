package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestUIBrowserFindAndEdit drives the TLS page over a state the command
// line made (250 mappings by "mapping import"): paging with the counts, a
// search, the status filter, an edit in the modal that "mapping show"
// sees, and the modal by keyboard.
func TestUIBrowserFindAndEdit(t *testing.T) {
	ctx := newBrowser(t)
	dir := filepath.Join(t.TempDir(), "state")
	addr, webAddr := freeAddr(t), freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	must := func(args ...string) string {
		t.Helper()
		r := p2ptls(t, env, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %v: exit %d %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	must("listener", "add", "web", "--addr", webAddr)
	var lines strings.Builder
	for i := range 250 {
		fmt.Fprintf(&lines, `{"listener":"web","hosts":["c%06d.example.test"],"id":"c%06d","source":"self-signed"}`+"\n", i, i)
	}
	in := filepath.Join(t.TempDir(), "mappings.jsonl")
	if err := os.WriteFile(in, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	must("mapping", "import", in)
	startServe(t, env)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(must("admin", "token", "create", "browser", "--output", "json")), &created); err != nil || created.Token == "" {
		t.Fatalf("admin token create: %v", err)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\n%s", what, err, page)
		}
	}
	until := func(what, js string) {
		t.Helper()
		run(what, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	}
	text := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	web := `section[data-listener="web"]`
	info := `document.querySelector('` + web + ` .page-info').textContent`
	run("sign in",
		chromedp.Navigate("https://"+addr+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(web+` tr[data-id="c000099"]`)),
	)
	until("the counts", info+` === "Showing 100 of 250 mappings; more to load."`)
	if got := text(`document.querySelector('` + web + ` .counts').textContent`); got != "250 mappings: 250 valid" {
		t.Errorf("counts: %q", got)
	}
	run("load more", chromedp.Click(chromedp.CSS(web+" .load-more")), chromedp.WaitVisible(chromedp.CSS(web+` tr[data-id="c000199"]`)))
	run("load the rest", chromedp.Click(chromedp.CSS(web+" .load-more")), chromedp.WaitVisible(chromedp.CSS(web+` tr[data-id="c000249"]`)))
	until("all shown", info+` === "Showing 250 mappings."`)

	run("search", chromedp.SendKeys(chromedp.CSS(web+` input[type="search"]`), "c00024"))
	until("the search's rows", `[...document.querySelectorAll('`+web+` tbody tr')].map(r => r.dataset.id).join() === "`+
		"c000240,c000241,c000242,c000243,c000244,c000245,c000246,c000247,c000248,c000249"+`"`)
	text(`(s => { s.value = "expired"; s.dispatchEvent(new Event("change")); return ""; })(document.querySelector('` + web + ` select[name="status"]'))`)
	until("none expired", info+` === "No mapping matches."`)
	text(`(s => { s.value = ""; s.dispatchEvent(new Event("change")); return ""; })(document.querySelector('` + web + ` select[name="status"]'))`)
	until("the search again", info+` === "Showing 10 mappings that match."`)

	// Edit by keyboard: Enter on the focused Edit button, Escape closes and
	// gives the focus back; then a new upstream, saved with Enter.
	edit := `tr[data-id="c000245"] button[data-action="edit"]`
	focusedEdit := `document.activeElement === document.querySelector('` + edit + `')`
	text(`(document.querySelector('` + edit + `').focus(), "")`)
	run("open the modal", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")))
	run("Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")))
	until("the focus back on Edit", focusedEdit)
	run("edit",
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#mapping-dialog")),
		chromedp.SendKeys(chromedp.CSS(`#mapping-form input[name="upstream"]`), "http://127.0.0.1:9097"+kb.Enter),
		chromedp.WaitNotVisible(chromedp.CSS("#mapping-dialog")),
	)
	until("the changed row in focus", focusedEdit+` && document.querySelector('tr[data-id="c000245"]').classList.contains("changed")`)
	var shown struct{ Upstream string }
	if err := json.Unmarshal([]byte(must("mapping", "show", "c000245", "--output", "json")), &shown); err != nil || shown.Upstream != "http://127.0.0.1:9097" {
		t.Errorf("mapping show after the edit: upstream %q, %v", shown.Upstream, err)
	}
	if got := text(`document.querySelector("#action-notice").textContent`); got != "Saved mapping c000245 (upstream)." {
		t.Errorf("notice %s", strconv.Quote(got))
	}
}
