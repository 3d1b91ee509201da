package mappings

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/parallel"
)

// Statuses is every status a mapping can have, as "mapping list" shows it.
var Statuses = []string{StatusValid, StatusExpiring, StatusExpired, StatusPending, StatusFailed, StatusMissing}

// Sources is every certificate source a mapping can have.
var Sources = []string{state.SourceACME, state.SourceManual, state.SourceFile, state.SourceSelfSigned}

// PageKey is the position of a mapping in a page walk: pages are in the
// order of listener, then id (byte order), which a mapping added or
// removed between two pages does not shift.
type PageKey struct {
	Listener, ID string
}

func (k PageKey) compare(o PageKey) int {
	if c := strings.Compare(k.Listener, o.Listener); c != 0 {
		return c
	}
	return strings.Compare(k.ID, o.ID)
}

// PageFilter selects the mappings of a page walk; the zero value selects
// every mapping.
type PageFilter struct {
	Listener string // "" for every listener
	Q        string // a part of the id or of a host, in any case; "" for any
	Status   string // one of Statuses; "" for any
	Source   string // one of Sources; "" for any
}

// PageQuery is one page: at most Limit mappings of Filter after After
// (nil: from the first).
type PageQuery struct {
	Filter PageFilter
	Limit  int
	After  *PageKey
}

// Page is one page of mappings; Next is the key to continue after, nil
// when the walk is over.
type Page struct {
	Items []Info
	Next  *PageKey
}

// ListPage describes one page of the mappings of cfg (see PageQuery), as
// List describes them, looking at the certificates of no more mappings
// than it must: the page's, and with a status filter the ones it passes
// over.
func ListPage(ctx context.Context, s state.Store, cfg *state.Config, q PageQuery, now time.Time) (Page, error) {
	sums := NewSummaries(s)
	defer sums.Save()
	return listPage(ctx, sums, cfg, q, now)
}

// pageScanBatch is how many candidates a status-filtered page describes
// at once; a variable so that tests cross batches.
var pageScanBatch = 512

func listPage(ctx context.Context, sums *Summaries, cfg *state.Config, q PageQuery, now time.Time) (Page, error) {
	f := q.Filter
	if f.Listener != "" {
		if _, err := cfg.FindListener(f.Listener); err != nil {
			return Page{}, err
		}
	}
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return Page{}, fault.Invalidf("use one of "+strings.Join(Statuses, ", "), "unknown status %q", f.Status)
	}
	if f.Source != "" && !slices.Contains(Sources, f.Source) {
		return Page{}, fault.Invalidf("use one of "+strings.Join(Sources, ", "), "unknown source %q", f.Source)
	}
	if q.Limit < 1 {
		return Page{}, fault.Invalidf("ask for one mapping or more", "a page of %d mappings", q.Limit)
	}
	needle := strings.ToLower(f.Q)
	var scope []state.Mapping // the listener's mappings, for ServedBy
	if f.Listener == "" {
		scope = cfg.Mappings
	}
	var cands []int
	for i := range cfg.Mappings {
		m := &cfg.Mappings[i]
		if f.Listener != "" {
			if m.Listener != f.Listener {
				continue
			}
			scope = append(scope, *m)
		}
		if q.After != nil && (PageKey{m.Listener, m.ID}).compare(*q.After) <= 0 {
			continue
		}
		if f.Source != "" && m.Source != f.Source {
			continue
		}
		if needle != "" && !matches(m, needle) {
			continue
		}
		cands = append(cands, i)
	}
	keyOf := func(i int) PageKey { return PageKey{cfg.Mappings[i].Listener, cfg.Mappings[i].ID} }
	byKey := func(a, b int) int { return keyOf(a).compare(keyOf(b)) }
	if f.Status == "" {
		// One more than the page, to know whether another follows.
		cands = smallest(cands, q.Limit+1, byKey)
	} else {
		slices.SortFunc(cands, byKey)
	}
	wild := wildcards(ctx, sums, scope, now)
	var p Page
	batch := make([]Info, 0, min(len(cands), max(q.Limit+1, pageScanBatch)))
	for start := 0; start < len(cands); start += cap(batch) {
		if err := ctx.Err(); err != nil {
			return Page{}, err
		}
		part := cands[start:min(start+cap(batch), len(cands))]
		batch = batch[:len(part)]
		parallel.Each(len(part), func(i int) bool {
			batch[i], _ = describe(ctx, sums, cfg.Mappings[part[i]], now, false)
			return true
		})
		for i := range batch {
			info := batch[i]
			if f.Status != "" && info.Status != f.Status {
				continue
			}
			if len(p.Items) == q.Limit {
				last := p.Items[len(p.Items)-1]
				p.Next = &PageKey{last.Listener, last.ID}
				return p, nil
			}
			setServedBy(&info, wild)
			p.Items = append(p.Items, info)
		}
	}
	return p, nil
}

// matches reports whether needle (lower case) is part of m's id or of one
// of its hosts, in any case.
func matches(m *state.Mapping, needle string) bool {
	if containsFold(m.ID, needle) {
		return true
	}
	for _, h := range m.Hosts {
		if containsFold(h, needle) {
			return true
		}
	}
	return false
}

// containsFold is strings.Contains(strings.ToLower(s), needle) without the
// copy for s already in lower case, as hosts are.
func containsFold(s, needle string) bool {
	if strings.Contains(s, needle) {
		return true
	}
	if strings.IndexFunc(s, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 0x80 }) < 0 {
		return false
	}
	return strings.Contains(strings.ToLower(s), needle)
}

// smallest returns the n smallest of xs by cmp, in order, without
// sorting all of xs: a page of 100 out of 100k mappings.
func smallest(xs []int, n int, cmp func(a, b int) int) []int {
	if len(xs) <= n {
		slices.SortFunc(xs, cmp)
		return xs
	}
	h := &maxHeap{cmp: cmp, xs: make([]int, 0, n)}
	for _, x := range xs {
		switch {
		case len(h.xs) < n:
			heap.Push(h, x)
		case cmp(x, h.xs[0]) < 0:
			h.xs[0] = x
			heap.Fix(h, 0)
		}
	}
	slices.SortFunc(h.xs, cmp)
	return h.xs
}

// maxHeap is a heap.Interface with the largest by cmp on top.
type maxHeap struct {
	cmp func(a, b int) int
	xs  []int
}

func (h *maxHeap) Len() int           { return len(h.xs) }
func (h *maxHeap) Less(i, j int) bool { return h.cmp(h.xs[i], h.xs[j]) > 0 }
func (h *maxHeap) Swap(i, j int)      { h.xs[i], h.xs[j] = h.xs[j], h.xs[i] }
func (h *maxHeap) Push(x any)         { h.xs = append(h.xs, x.(int)) }
func (h *maxHeap) Pop() any {
	x := h.xs[len(h.xs)-1]
	h.xs = h.xs[:len(h.xs)-1]
	return x
}

// cursorSumSize is the length of the check sum a cursor ends with.
const cursorSumSize = 12

// ErrCursor is the error of a cursor that DecodeCursor refuses.
var ErrCursor = errors.New("invalid cursor")

// cursorBody is what a cursor holds: the filter of the walk it belongs to
// (listener, q, status, source) and the key of the last mapping of the
// page before. A cursor made before the source filter existed holds three
// filters and decodes with source "", the walk it belongs to.
type cursorBody struct {
	V      int       `json:"v"`
	Filter [4]string `json:"f"`
	Key    [2]string `json:"k"`
}

// EncodeCursor is the opaque cursor that continues the walk of f after
// key: base64url (no padding) of the filter and the key, with a SHA-256
// check sum. The sum detects a cursor that was edited or cut; it is no
// secret, and needs none: a cursor grants nothing a client could not ask
// for, and a sum every replica and every restart of serve computes alike
// keeps cursors valid across them.
func EncodeCursor(f PageFilter, key PageKey) string {
	body, _ := json.Marshal(cursorBody{V: 1, Filter: cursorFilter(f), Key: [2]string{key.Listener, key.ID}})
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.EncodeToString(append(body, sum[:cursorSumSize]...))
}

// DecodeCursor is the key of cursor c, which must come from EncodeCursor
// with the same filter f; its errors are ErrCursor (not a cursor, or one
// that was changed) and ErrCursorFilter.
func DecodeCursor(c string, f PageFilter) (PageKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) <= cursorSumSize {
		return PageKey{}, ErrCursor
	}
	body, got := b[:len(b)-cursorSumSize], b[len(b)-cursorSumSize:]
	want := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(got, want[:cursorSumSize]) != 1 {
		return PageKey{}, ErrCursor
	}
	var cb cursorBody
	if err := json.Unmarshal(body, &cb); err != nil || cb.V != 1 {
		return PageKey{}, ErrCursor
	}
	if cb.Filter != cursorFilter(f) {
		return PageKey{}, ErrCursorFilter
	}
	return PageKey{cb.Key[0], cb.Key[1]}, nil
}

// cursorFilter is f as a cursor holds it.
func cursorFilter(f PageFilter) [4]string { return [4]string{f.Listener, f.Q, f.Status, f.Source} }

// ErrCursorFilter is the error of a valid cursor sent with other filters
// than the walk it came from.
var ErrCursorFilter = errors.New("the cursor belongs to a walk with other filters")
