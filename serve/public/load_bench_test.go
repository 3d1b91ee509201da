package public

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/packedcert"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// What serve does when it starts or reloads with N mappings on one
// listener. The goal is 100k mappings loaded or reloaded in at most 1 s.
//
//	go test -run XXX -bench 'Load|Reload' -benchtime 3x ./serve/public/

var benchSizes = []int{1, 10_000, 100_000}

// BenchmarkLoad times Start on a fresh Server: LoadConfig (decode and
// validate p2ptls.toml), building the listener's view, and opening the
// listener. Stopping it is not timed.
func BenchmarkLoad(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			store := benchFixture(b, n)
			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				// A starting serve has an empty heap; the previous
				// iteration's Server must not be collected on our clock.
				runtime.GC()
				s := New(Options{Store: store, Log: discardLog})
				b.StartTimer()
				at := processCPU()
				if err := s.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU() - at
				b.StopTimer()
				stopServer(s)
				b.StartTimer()
			}
			// CPU time: a shared machine stretches ns/op, not this.
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			reportPerMapping(b, n)
		})
	}
}

// BenchmarkReload times one reload of a running Server after a change, the
// way Run does it when the store signals: a new revision (here a new
// modification time of p2ptls.toml, as a hand edit makes), then poll with
// the lock held. Every entry is reused, so this is
// the cost of noticing and re-indexing, not of parsing certificates.
func BenchmarkReload(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			store := benchFixture(b, n)
			s := New(Options{Store: store, Log: discardLog})
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer stopServer(s)
			cfgFile := filepath.Join(store.Root(), state.ConfigFile)
			b.ReportAllocs()
			rev := 0
			for b.Loop() {
				b.StopTimer()
				rev++
				mtime := time.Unix(1_700_000_000+int64(rev), 0)
				if err := os.Chtimes(cfgFile, mtime, mtime); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				s.mu.Lock()
				s.poll(context.Background(), true)
				reloads, lastErr := s.reloads, s.lastErr
				s.mu.Unlock()
				if reloads != rev || lastErr != "" {
					b.Fatalf("reload %d: reloads=%d err=%q", rev, reloads, lastErr)
				}
			}
			reportPerMapping(b, n)
		})
	}
}

// BenchmarkWarmHeapGC times one full garbage collection of a Server whose
// every certificate has been used, the state serve reaches after running a
// while. A TLS server allocates tens of kB per handshake, so a GC cycle runs
// every few thousand handshakes and its cost is shared among them: what the
// mappings keep on the heap is a per-handshake cost. It reports the
// scannable heap (what the collector must walk) and the heap objects per
// mapping besides the time. Run it with GOMAXPROCS=1 to compare runs:
//
//	GOMAXPROCS=1 TMPDIR=/dev/shm go test -run XXX -bench WarmHeapGC ./serve/public/
//
// cpu-ns/op is a cycle's CPU time; with BenchmarkHandshake's gc-cycles/1k-op it
// gives the collector's CPU per handshake.
func BenchmarkWarmHeapGC(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			store := benchFixture(b, n)
			runtime.GC()
			before := heapStats()
			s := New(Options{Store: store, Log: discardLog})
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer stopServer(s)
			l := s.listeners["bench"]
			for _, e := range l.view.Load().entries.all() {
				if _, err := e.certificate(store, &l.hot); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			after := heapStats()
			cpu := processCPU()
			for b.Loop() {
				runtime.GC()
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(after.scan-before.scan)/(1<<20), "scan-MiB")
			b.ReportMetric(float64(after.live-before.live)/(1<<20), "live-MiB")
			b.ReportMetric(float64(packedcert.MappedBytes())/(1<<20), "offheap-MiB")
			b.ReportMetric(float64(after.objects-before.objects)/float64(n), "objects/mapping")
		})
	}
}

type heapStat struct{ scan, objects, live int64 }

func heapStats() heapStat {
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return heapStat{int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64()), int64(s[2].Value.Uint64())}
}

var discardLog = slog.New(slog.DiscardHandler)

func stopServer(s *Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopAll()
}

func reportPerMapping(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/mapping")
}

// The state directories are large (100k mappings are 300k files and
// directories) and both benchmarks use them, so each is built once per test
// binary under one os.MkdirTemp directory that TestMain removes;
// b.TempDir would be removed after the first benchmark already.
var (
	fixtureMu   sync.Mutex
	fixtureRoot string
	fixtures    = map[int]*state.Dir{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	// A memory profile of a benchmark needs the sampling Start turns off.
	keepMemProfile = flag.Lookup("test.memprofile").Value.String() != ""
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

// benchFixture returns a state directory with one listener "bench" on a
// free 127.0.0.1 port and n mappings of one host each: h000000.example.com,
// and every fourth a wildcard, *.w000003.example.net.
func benchFixture(b testing.TB, n int) *state.Dir {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if d, ok := fixtures[n]; ok {
		return d
	}
	start := time.Now()
	if fixtureRoot == "" {
		var err error
		if fixtureRoot, err = os.MkdirTemp("", "p2ptls-load-bench-"); err != nil {
			b.Fatal(err)
		}
	}
	dir := filepath.Join(fixtureRoot, fmt.Sprintf("n%d", n))
	store := state.OpenDir(dir, time.Second)

	// Loading is lazy: neither Start nor a reload reads the certificate
	// files (they only stat them), so every mapping can share one pair,
	// which keeps building 100k mappings fast.
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"bench.example.com"}), time.Now(), 30*24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &state.Config{
		SchemaVersion: state.SchemaVersion,
		Listeners:     []state.Listener{{Name: "bench", Addr: freeLocalAddr(b)}},
		Mappings:      make([]state.Mapping, n),
	}
	for i := range cfg.Mappings {
		host := fmt.Sprintf("h%06d.example.com", i)
		if i%4 == 3 {
			host = fmt.Sprintf("*.w%06d.example.net", i)
		}
		cfg.Mappings[i] = state.Mapping{ID: fmt.Sprintf("m%06d", i), Listener: "bench", Hosts: []string{host}, Source: state.SourceManual}
	}
	// Plain writes, no fsync (p2ptls's atomic writes would take minutes
	// here), from a few goroutines: creating files is all system time.
	ids := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for id := range ids {
				if err := writePair(dir, id, kp.CertPEM, kp.KeyPEM); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, m := range cfg.Mappings {
		ids <- m.ID
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	if err := state.SaveConfig(context.Background(), store, cfg); err != nil {
		b.Fatal(err)
	}
	b.Logf("fixture with %d mappings built in %v", n, time.Since(start).Round(time.Millisecond))
	fixtures[n] = store
	return store
}

// writePair writes mapping id's cert.pem and key.pem where p2ptls keeps them.
func writePair(dir, id string, certPEM, keyPEM []byte) error {
	md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(id)))
	if err := os.MkdirAll(md, state.DirMode); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(md, mappings.CertFileName), certPEM, state.PublicMode); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(md, mappings.KeyFileName), keyPEM, state.SecretMode)
}

// freeLocalAddr returns a 127.0.0.1 address with a port that was free just
// now; listeners need a fixed port in p2ptls.toml.
func freeLocalAddr(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
