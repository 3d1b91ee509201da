package metrics

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
)

// The per-mapping families are written straight from the snapshot in the
// text exposition format, not through the registry: at 100k mappings they
// are 500k samples, and a const metric each, which the registry then
// checks, sorts and encodes, cost 2.4 s of CPU per scrape (BenchmarkScrape
// before this file); written directly they cost a small fraction of that.
// The registry still gathers everything else (the Go and process
// collectors, the counters, build info).

// mappingFamily is one per-mapping family.
type mappingFamily struct {
	name, help, typ string
	// value is s's sample, ok false for none.
	value func(s *sample, failures uint64) (v int64, ok bool)
}

var mappingFamilies = []mappingFamily{
	{"p2ptls_cert_not_after_seconds", "End of validity of the mapping's usable certificate, in Unix seconds.", "gauge",
		func(s *sample, _ uint64) (int64, bool) { return s.notAfter, s.cert }},
	{"p2ptls_cert_not_before_seconds", "Start of validity of the mapping's usable certificate, in Unix seconds.", "gauge",
		func(s *sample, _ uint64) (int64, bool) { return s.notBefore, s.cert }},
	{"p2ptls_cert_renewal_at_seconds", "When the mapping's certificate is due for renewal (next_renewal_at of 'cert list'), in Unix seconds.", "gauge",
		func(s *sample, _ uint64) (int64, bool) { return s.renewAt, s.cert }},
	{"p2ptls_cert_renewal_failures_total", "Failed issuance or renewal attempts serve's renewal loop made for the ACME mapping since serve started.", "counter",
		func(s *sample, failures uint64) (int64, bool) { return int64(failures), s.acme }},
	{"p2ptls_cert_last_renewal_success", "1 unless the ACME mapping's last issuance or renewal attempt (by serve or cron) failed, then 0.", "gauge",
		func(s *sample, _ uint64) (int64, bool) {
			if s.renewOK {
				return 1, s.acme
			}
			return 0, s.acme
		}},
}

// maxScrapes bounds the scrapes answered at once; more get 503. One
// scrape of 100k mappings holds its buffers (tens of MB with gzip).
const maxScrapes = 4

// textFormat is the one format /metrics answers in: Prometheus's text
// format 0.0.4, which every scraper reads.
var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// Handler answers a scrape: the registry's families, then the mappings'.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case m.scrapes <- struct{}{}:
			defer func() { <-m.scrapes }()
		default:
			http.Error(w, "too many scrapes at once; try again", http.StatusServiceUnavailable)
			return
		}
		m.awaitSnapshot(r.Context())
		fams, err := m.reg.Gather()
		if err != nil && m.o.Log != nil {
			// Gather returns what it could; a collector's error is logged.
			m.o.Log.Error("metrics: a collector failed", "err", err)
		}
		h := w.Header()
		h.Set("Content-Type", string(textFormat))
		h.Set("Cache-Control", "no-store")
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = w
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			// BestSpeed: 100k mappings are 50 MB of text, which the
			// default level takes several times as long to compress, for
			// little gain on text this repetitive.
			gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer gz.Close()
			out = gz
		}
		bw := bufio.NewWriterSize(out, 64<<10)
		enc := expfmt.NewEncoder(bw, textFormat)
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				return // the scraper went away
			}
		}
		m.writeMappings(bw)
		bw.Flush()
	})
}

// awaitSnapshot asks Run for the mappings' snapshot and, on the first
// scrape, waits until it is built (or the scraper gives up: the scrape
// then has every series but the mappings').
func (m *Metrics) awaitSnapshot(ctx context.Context) {
	m.wantedOnce.Do(func() { close(m.wanted) })
	select {
	case <-m.ready:
	case <-ctx.Done():
	}
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip.
func acceptsGzip(v string) bool {
	for part := range strings.SplitSeq(v, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// writeMappings writes the per-mapping families of the snapshot.
func (m *Metrics) writeMappings(w *bufio.Writer) {
	snap := m.snap.Load()
	if snap == nil || len(snap.mappings) == 0 {
		return
	}
	failures := m.renewalFailures()
	var line []byte
	for _, f := range mappingFamilies {
		line = append(line[:0], "# HELP "...)
		line = append(append(append(line, f.name...), ' '), f.help...)
		line = append(append(append(append(line, "\n# TYPE "...), f.name...), ' '), f.typ...)
		line = append(line, '\n')
		w.Write(line)
		for i := range snap.mappings {
			s := &snap.mappings[i]
			id := snap.id(s)
			var n uint64
			if len(failures) > 0 {
				n = failures[string(id)] // no copy: the compiler looks bytes up as they are
			}
			v, ok := f.value(s, n)
			if !ok {
				continue
			}
			line = append(line[:0], f.name...)
			line = appendLabel(append(line, '{'), "listener", snap.names[s.listener])
			line = appendLabel(append(line, ','), "mapping", id)
			line = appendLabel(append(line, ','), "source", snap.names[s.source])
			line = strconv.AppendInt(append(line, "} "...), v, 10)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}
}

// appendLabel appends name="value", value escaped as the text format
// wants (backslash, double quote, newline).
func appendLabel[T string | []byte](b []byte, name string, value T) []byte {
	b = append(append(b, name...), '=', '"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
