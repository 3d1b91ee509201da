package management

import (
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// scaleMappings is how many mappings TestUIAtScale puts on one listener.
const scaleMappings = 10_000

// TestUIAtScale: 10,000 mappings on one listener (through "mapping
// import", self-signed). The page shows the first 100 with the counts,
// pages on, and searches. It logs what issue 19 asks of the page, without
// asserting it (timed asserts fail on a busy machine):
//
//   - navigation to the first rows rendered (goal: within 2 s), from the
//     page's own mark "p2ptls:rows";
//   - a search, from the keystroke to its rows (goal: within 300 ms), the
//     typing pause of the page included.
//
// Run it alone for figures: go test -run TestUIAtScale -v ./serve/management/
func TestUIAtScale(t *testing.T) {
	ta := newTestAPI(t)
	start := time.Now()
	importSelfSigned(t, ta, "api", "s", scaleMappings)
	t.Logf("%d mappings imported in %v", scaleMappings, time.Since(start).Round(time.Millisecond))
	p := openUI(t, ta)
	p.step("wide window", chromedp.EmulateViewport(1280, 900))
	api := `section[data-listener="api"]`

	// Navigation to the first rows, three times (the first warms the
	// server's memos as a running serve has them).
	var loads []float64
	for range 3 {
		p.step("load the page", chromedp.Navigate(p.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#tls")))
		p.waitRows()
		loads = append(loads, evalJS[float64](p, `performance.getEntriesByName("p2ptls:rows")[0].startTime`))
	}
	t.Logf("navigation → first rows rendered: %s ms (goal ≤ 2000 ms)", figures(loads))
	if got := p.eval(`document.querySelector('` + api + ` .page-info').textContent`); got != "Showing 100 of 10,000 mappings; more to load." {
		t.Errorf("first page at scale: %q", got)
	}
	p.waitJS("counts", `document.querySelector('`+api+` .counts').textContent === "10,000 mappings: 10,000 valid"`)
	if got := p.eval(`document.querySelector("#tls-counts").textContent`); got != "10,003 mappings on 2 listeners: 1 pending" {
		t.Errorf("counts at the top: %q", got)
	}
	p.screenshot("ui-10000-mappings.png")
	p.step("load more", chromedp.Click(chromedp.CSS(api+" .load-more")))
	p.waitJS("the second page", `document.querySelectorAll('`+api+` tbody tr').length === 200 &&
		document.querySelector('`+api+` tbody tr:last-child').dataset.id === "s000199"`)

	// Searches for one mapping, each from the input to its one row; the
	// API's share is the listing's resource timing.
	var total, server []float64
	for i, id := range []string{"s004321", "s009999", "s000007", "s005000", "s001234"} {
		ms := evalJS[[]float64](p, `new Promise((resolve) => {
			const sec = document.querySelector('`+api+`');
			const q = sec.querySelector('input[type="search"]');
			const body = sec.querySelector("tbody");
			const t0 = performance.now();
			const seen = new MutationObserver(() => {
				if (body.rows.length === 1 && body.rows[0].dataset.id === "`+id+`") {
					seen.disconnect();
					const took = performance.now() - t0;
					const calls = performance.getEntriesByType("resource").filter((e) => e.name.includes("q=`+id+`"));
					resolve([took, calls.length ? calls.at(-1).duration : -1]);
				}
			});
			seen.observe(body, { childList: true });
			q.value = "`+id+`";
			q.dispatchEvent(new Event("input"));
		})`)
		if len(ms) != 2 {
			t.Fatalf("search %d: %v", i, ms)
		}
		total, server = append(total, ms[0]), append(server, ms[1])
	}
	t.Logf("search → its row: %s ms, of which the API call %s ms and the page's typing pause (searchDelay in app.js) 150 ms (goal ≤ 300 ms)",
		figures(total), figures(server))
}

// figures says a few measurements as "min–max (median m)".
func figures(ms []float64) string {
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	r := func(v float64) int { return int(math.Round(v)) }
	return fmt.Sprintf("%d–%d (median %d)", r(s[0]), r(s[len(s)-1]), r(s[len(s)/2]))
}
