package public

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// TestChangeToServedLatency measures, and only logs, how long a running
// serve over 1000 mappings takes to serve a mapping that a locked change
// (what "p2ptls mapping add" makes) has just added. Nothing is asserted
// about speed: the shared CI machine decides that. It fails only when the
// new mapping is not served at all within a generous bound.
//
// P2PTLS_LATENCY_SIZES (e.g. "1000,10000,100000") measures other sizes;
// building 100k records takes about a minute, too long for every run.
func TestChangeToServedLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a state of 1000 mappings")
	}
	sizes := []int{1000}
	if env := os.Getenv("P2PTLS_LATENCY_SIZES"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("P2PTLS_LATENCY_SIZES: %q is not a positive count", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) { changeToServed(t, n) })
	}
}

func changeToServed(t *testing.T, n int) {
	store := benchFixture(t, n)
	// The fixture is shared with other tests and runs (-count): take the
	// trials' mappings out again, so that every run starts from n.
	t.Cleanup(func() {
		err := state.Update(context.Background(), store, "test cleanup", func(tx *state.Tx) error {
			tx.Config.Mappings = slices.DeleteFunc(tx.Config.Mappings, func(m state.Mapping) bool {
				if !strings.HasPrefix(m.ID, "late") {
					return false
				}
				return tx.Delete(context.Background(), mappings.MappingDir(m.ID)) == nil
			})
			return nil
		})
		if err != nil {
			t.Errorf("remove the trials' mappings: %v", err)
		}
	})
	reloads := &reloadLog{}
	s := New(Options{Store: store, Log: slog.New(reloads)})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.mu.Lock()
	addr := s.listeners["bench"].addr.String()
	s.mu.Unlock()

	const trials = 9
	var took, signal, apply []time.Duration
	fulls := 0
	for i := range trials {
		id := fmt.Sprintf("late%d", i)
		host := id + ".example.org"
		kp, err := pki.SelfSigned(pki.ParseNames([]string{host}), time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// A random pause, so that the change does not fall in step with
		// any timer of serve's.
		time.Sleep(rand.N(500 * time.Millisecond))
		// The files first, outside the lock (no revision), then the
		// mapping under it: the change is the one Update.
		if err := writePair(store.Root(), id, kp.CertPEM, kp.KeyPEM); err != nil {
			t.Fatal(err)
		}
		err = state.Update(context.Background(), store, "test", func(tx *state.Tx) error {
			tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: id, Listener: "bench", Hosts: []string{host}, Source: state.SourceManual})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		// From the commit (Update returned) to the first handshake that
		// gets the new certificate.
		d, ok := waitServed(addr, host, 30*time.Second)
		if !ok {
			t.Fatalf("mapping %s not served %v after the change", id, d)
		}
		took = append(took, d)
		// The reload that served it: when it began (the signal's
		// latency) and what it cost.
		if r, ok := reloads.after(committed); ok {
			signal = append(signal, r.at.Add(-r.took).Sub(committed))
			apply = append(apply, r.took)
			if r.full {
				fulls++
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // a last signal of the last change
	s.mu.Lock()
	count := s.reloads
	s.mu.Unlock()
	t.Logf("change -> served over %d mappings, %d trials: %s; %d reloads", n, trials, spread(took), count)
	t.Logf("  of which: commit -> reload begins %s; reload %s; %d of %d reloads full", spread(signal), spread(apply), fulls, len(apply))
}

// spread is min, median and max of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return fmt.Sprintf("min %v, median %v, max %v", ds[0], ds[len(ds)/2], ds[len(ds)-1])
}

// reloadLog keeps serve's "reloaded" log records, for their times.
type reloadLog struct {
	mu   sync.Mutex
	list []reloadRecord
}

type reloadRecord struct {
	at   time.Time
	took time.Duration
	full bool
}

func (l *reloadLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *reloadLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *reloadLog) WithGroup(string) slog.Handler            { return l }
func (l *reloadLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasSuffix(r.Message, " reloaded") {
		return nil
	}
	rec := reloadRecord{at: r.Time, full: r.Message == "state reloaded"}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "took" {
			rec.took = a.Value.Duration()
		}
		return true
	})
	l.mu.Lock()
	l.list = append(l.list, rec)
	l.mu.Unlock()
	return nil
}

// after is the first reload logged after t.
func (l *reloadLog) after(t time.Time) (reloadRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.list {
		if r.at.After(t) {
			return r, true
		}
	}
	return reloadRecord{}, false
}

// waitServed handshakes with addr for host, every millisecond, until the
// certificate served names host or limit passes; it returns how long that
// took.
func waitServed(addr, host string, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err == nil {
			certs := conn.ConnectionState().PeerCertificates
			conn.Close()
			if len(certs) > 0 && slices.Contains(certs[0].DNSNames, host) {
				return time.Since(start), true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start), false
}
