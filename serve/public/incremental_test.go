package public

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// countingStore counts the records read, which tells an incremental reload
// (the changed records) from a full one (all of them).
type countingStore struct {
	state.Store
	records atomic.Int64
}

func (c *countingStore) Read(ctx context.Context, name string) ([]byte, error) {
	if strings.HasPrefix(name, state.RecordsDir+"/") {
		c.records.Add(1)
	}
	return c.Store.Read(ctx, name)
}

// incrFixture is a running serve over n mappings m00.. (host mNN.example.com)
// on listener "web", every one with a certificate.
type incrFixture struct {
	t     *testing.T
	dir   *state.Dir
	store *countingStore
	s     *Server
	addr  string
}

func newIncrFixture(t *testing.T, n int) *incrFixture {
	t.Helper()
	return newIncrFixtureOver(t, n, func(s state.Store) state.Store { return s })
}

// newIncrFixtureOver runs serve over wrap(the counting store).
func newIncrFixtureOver(t *testing.T, n int, wrap func(state.Store) state.Store) *incrFixture {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	dir := state.OpenDir(root, 5*time.Second)
	cfg := &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{{Name: "web", Addr: freeLocalAddr(t)}}}
	f := &incrFixture{t: t, dir: dir, store: &countingStore{Store: dir}}
	for i := range n {
		m := state.Mapping{ID: fmt.Sprintf("m%02d", i), Listener: "web", Hosts: []string{fmt.Sprintf("m%02d.example.com", i)}, Source: state.SourceManual}
		cfg.Mappings = append(cfg.Mappings, m)
		f.cert(m.ID, m.Hosts...)
	}
	if err := state.SaveConfig(context.Background(), dir, cfg); err != nil {
		t.Fatal(err)
	}
	f.s = New(Options{Store: wrap(f.store), Log: discardLog})
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f.s.mu.Lock()
	f.addr = f.s.listeners["web"].addr.String()
	f.s.mu.Unlock()
	return f
}

// cert writes a certificate for hosts as mapping id's, outside the lock.
func (f *incrFixture) cert(id string, hosts ...string) {
	f.t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), time.Now(), 24*time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := writePair(f.dir.Root(), id, kp.CertPEM, kp.KeyPEM); err != nil {
		f.t.Fatal(err)
	}
}

func (f *incrFixture) update(fn func(cfg *state.Config)) {
	f.t.Helper()
	err := state.Update(context.Background(), f.dir, "test", func(tx *state.Tx) error {
		fn(tx.Config)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// record writes mapping m's record by hand, renamed into place as an
// editor saves.
func (f *incrFixture) record(id, content string) {
	f.t.Helper()
	p := filepath.Join(f.dir.Root(), filepath.FromSlash(state.RecordName(id)))
	if err := os.WriteFile(p+".new~", []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(p+".new~", p); err != nil {
		f.t.Fatal(err)
	}
}

// served returns the DNS names of the certificate served for host.
func (f *incrFixture) served(host string) []string {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", f.addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].DNSNames
}

// until polls cond every 5 ms for up to 15 s.
func (f *incrFixture) until(what string, cond func() bool) {
	f.t.Helper()
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	f.t.Fatalf("%s: not within 15s", what)
}

// consistent checks that what the listener serves is what serve holds by
// id: each entry once, in its slot, with its hosts in the index.
func (f *incrFixture) consistent(what string) {
	f.t.Helper()
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	v := f.s.listeners["web"].view.Load()
	hosts := 0
	for i, e := range v.entries.all() {
		if int(e.slot) != i {
			f.t.Errorf("%s: entry %s in slot %d says %d", what, e.id(), i, e.slot)
		}
		if f.s.byID.get(e.id()) != e {
			f.t.Errorf("%s: entry %s served is not serve's entry of that id", what, e.id())
		}
		hosts += e.hostCount()
	}
	if v.entries.len() != f.s.byID.len() || v.index.Len() != hosts {
		f.t.Errorf("%s: %d entries, %d by id, %d hosts indexed for %d", what, v.entries.len(), f.s.byID.len(), v.index.Len(), hosts)
	}
}

func (f *incrFixture) lastErr() string {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.lastErr
}

func (f *incrFixture) reloads() int {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.reloads
}

// TestIncrementalReload: a change of a few mappings re-reads only their
// records, and applies them with the rules of a full load: a record that
// does not apply (another listener, a host another mapping has) keeps its
// mapping's previous state, and last_reload_error names the file until it
// is fixed. A change of p2ptls.toml reloads everything.
func TestIncrementalReload(t *testing.T) {
	const n = 40
	f := newIncrFixture(t, n)
	serves := func(host string, want ...string) func() bool {
		return func() bool {
			got := f.served(host)
			return slices.Equal(got, want)
		}
	}
	fallback := func(host string) func() bool {
		return func() bool { return slices.Equal(f.served(host), []string{"p2ptls-fallback.invalid"}) }
	}
	steps := []struct {
		what    string
		do      func()
		served  func() bool
		lastErr string // "" none, else a part of it
		full    bool   // every record read again
	}{
		{"a mapping added", func() {
			f.cert("new", "new.example.com")
			f.update(func(cfg *state.Config) {
				cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: state.SourceManual})
			})
		}, serves("new.example.com", "new.example.com"), "", false},
		{"two mappings swap a host in one change", func() {
			f.cert("m00", "m00.example.com", "swap.example.com")
			f.cert("m01", "m01.example.com")
			f.update(func(cfg *state.Config) {
				cfg.Mappings[0].Hosts = append(cfg.Mappings[0].Hosts, "swap.example.com")
			})
			f.update(func(cfg *state.Config) {
				cfg.Mappings[0].Hosts = cfg.Mappings[0].Hosts[:1]
				cfg.Mappings[1].Hosts = append(cfg.Mappings[1].Hosts, "swap.example.com")
			})
		}, func() bool { return slices.Contains(f.served("swap.example.com"), "m01.example.com") }, "", false},
		{"a record edited by hand", func() {
			f.cert("new", "new2.example.com")
			f.record("new", "id = 'new'\nlistener = 'web'\nhosts = ['new2.example.com']\nsource = 'manual'\n")
		}, func() bool { return serves("new2.example.com", "new2.example.com")() && fallback("new.example.com")() }, "", false},
		{"a record naming no listener", func() {
			f.record("new", "id = 'new'\nlistener = 'nope'\nhosts = ['new3.example.com']\nsource = 'manual'\n")
		}, serves("new2.example.com", "new2.example.com"), "mappings/new.toml", false},
		{"a record taking another mapping's host", func() {
			f.cert("bad", "m02.example.com")
			f.record("bad", "id = 'bad'\nlistener = 'web'\nhosts = ['m02.example.com']\nsource = 'manual'\n")
		}, serves("m02.example.com", "m02.example.com"), "mappings/bad.toml", false},
		{"the first record fixed", func() {
			f.record("new", "id = 'new'\nlistener = 'web'\nhosts = ['new2.example.com']\nsource = 'manual'\n")
		}, serves("new2.example.com", "new2.example.com"), "mappings/bad.toml", false},
		{"the conflicting record removed", func() {
			if err := os.Remove(filepath.Join(f.dir.Root(), "mappings", "bad.toml")); err != nil {
				t.Fatal(err)
			}
		}, serves("m02.example.com", "m02.example.com"), "", false},
		{"a mapping removed", func() {
			f.update(func(cfg *state.Config) {
				cfg.Mappings = slices.DeleteFunc(cfg.Mappings, func(m state.Mapping) bool { return m.ID == "new" })
			})
		}, fallback("new2.example.com"), "", false},
		{"a renewed certificate", func() {
			kp, err := pki.SelfSigned(pki.ParseNames([]string{"m03.example.com", "renewed.example.com"}), time.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			err = state.Update(context.Background(), f.dir, "test", func(tx *state.Tx) error {
				return tx.Write(context.Background(), "certs/public/m03/cert.pem", kp.CertPEM, state.PublicMode)
			})
			if err == nil {
				err = state.Update(context.Background(), f.dir, "test", func(tx *state.Tx) error {
					return tx.Write(context.Background(), "certs/public/m03/key.pem", kp.KeyPEM, state.SecretMode)
				})
			}
			if err != nil {
				t.Fatal(err)
			}
		}, serves("m03.example.com", "m03.example.com", "renewed.example.com"), "", false},
		{"p2ptls.toml changed", func() {
			f.update(func(cfg *state.Config) { cfg.ACME.DNSResolvers = []string{"127.0.0.1:53"} })
		}, serves("m04.example.com", "m04.example.com"), "", true},
	}
	// m03 must be in use for a renewal to be re-read (an unused entry
	// reads whatever is current when first used).
	f.until("m03 served", serves("m03.example.com", "m03.example.com"))
	for _, s := range steps {
		reads, reloads := f.store.records.Load(), f.reloads()
		s.do()
		f.until(s.what, func() bool {
			if !s.served() {
				return false
			}
			got := f.lastErr()
			if s.lastErr == "" {
				return got == ""
			}
			return strings.Contains(got, s.lastErr)
		})
		// The last signal of the step may still be on its way.
		f.until(s.what+": reloaded", func() bool { return f.reloads() > reloads })
		time.Sleep(50 * time.Millisecond)
		read := f.store.records.Load() - reads
		if s.full && read < n {
			t.Errorf("%s: %d records read, want a full reload (%d or more)", s.what, read, n)
		}
		if !s.full && read >= n {
			t.Errorf("%s: %d records read, want only the changed ones", s.what, read)
		}
		f.consistent(s.what)
		if s.what == "the first record fixed" && strings.Contains(f.lastErr(), "new.toml") {
			t.Errorf("%s: last_reload_error still names the fixed record: %s", s.what, f.lastErr())
		}
	}
}

// TestNoFailedHandshakeWhileChangesLand: handshakes for a mapping that
// stays keep succeeding, with its certificate, while other mappings are
// added and removed and its own certificate is renewed: each holds the view
// it started with. Bounded: 30 changes, or 60 s. P2PTLS_CHURN_MAPPINGS
// (e.g. 100000) runs it over that many mappings instead of 20; building
// 100k certificates takes a minute or two.
func TestNoFailedHandshakeWhileChangesLand(t *testing.T) {
	size := 20
	if env := os.Getenv("P2PTLS_CHURN_MAPPINGS"); env != "" {
		v, err := strconv.Atoi(env)
		if err != nil || v < 1 {
			t.Fatalf("P2PTLS_CHURN_MAPPINGS: %q is not a positive count", env)
		}
		size = v
	}
	f := newIncrFixture(t, size)
	f.until("m00 served", func() bool { return slices.Contains(f.served("m00.example.com"), "m00.example.com") })
	stop := make(chan struct{})
	type tally struct{ ok, failed int }
	done := make(chan tally)
	go func() {
		var n tally
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if got := f.served("m00.example.com"); slices.Contains(got, "m00.example.com") {
				n.ok++
			} else {
				n.failed++
				t.Logf("handshake for m00 got %v", got)
			}
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 30 && time.Now().Before(deadline); i++ {
		id := fmt.Sprintf("churn%d", i)
		switch i % 3 {
		case 0:
			f.cert(id, id+".example.com")
			f.update(func(cfg *state.Config) {
				cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceManual})
			})
		case 1:
			f.update(func(cfg *state.Config) { cfg.Mappings = cfg.Mappings[:len(cfg.Mappings)-1] })
		case 2:
			kp, err := pki.SelfSigned(pki.ParseNames([]string{"m00.example.com"}), time.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			err = state.Update(context.Background(), f.dir, "test", func(tx *state.Tx) error {
				if err := tx.Write(context.Background(), "certs/public/m00/cert.pem", kp.CertPEM, state.PublicMode); err != nil {
					return err
				}
				return tx.Write(context.Background(), "certs/public/m00/key.pem", kp.KeyPEM, state.SecretMode)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	n := <-done
	t.Logf("handshakes while changes landed: %d ok, %d failed", n.ok, n.failed)
	if n.failed > 0 || n.ok == 0 {
		t.Errorf("handshakes while changes landed: %d ok, %d failed", n.ok, n.failed)
	}
	if e := f.lastErr(); e != "" {
		t.Errorf("reload error: %s", e)
	}
}

// TestRotatedFileReloadsOneMapping: the operator's files of a "file"
// mapping change outside the state; the tick notices and reloads that
// mapping alone.
func TestRotatedFileReloadsOneMapping(t *testing.T) {
	const n = 40
	f := newIncrFixture(t, n)
	ext := t.TempDir()
	certFile, keyFile := filepath.Join(ext, "cert.pem"), filepath.Join(ext, "key.pem")
	writeExt := func(hosts ...string) {
		kp, err := pki.SelfSigned(pki.ParseNames(hosts), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for p, b := range map[string][]byte{certFile: kp.CertPEM, keyFile: kp.KeyPEM} {
			if err := os.WriteFile(p+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeExt("ext.example.com")
	f.update(func(cfg *state.Config) {
		cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: "ext", Listener: "web", Hosts: []string{"ext.example.com"}, Source: state.SourceFile, CertFile: certFile, KeyFile: keyFile})
	})
	f.until("the file mapping served", func() bool { return slices.Equal(f.served("ext.example.com"), []string{"ext.example.com"}) })
	time.Sleep(2 * tickInterval) // the change's own reloads are over
	reads := f.store.records.Load()
	writeExt("ext.example.com", "rotated.example.com")
	f.until("the rotated file served", func() bool {
		return slices.Equal(f.served("ext.example.com"), []string{"ext.example.com", "rotated.example.com"})
	})
	if read := f.store.records.Load() - reads; read >= n {
		t.Errorf("a rotated file read %d records, want only its mapping's", read)
	}
	if e := f.lastErr(); e != "" {
		t.Errorf("reload error: %s", e)
	}
}

// stuckStatusStore never finishes writing the runtime status, as a disk
// whose fsync stalls.
type stuckStatusStore struct {
	state.Store
	stall   atomic.Bool
	release chan struct{}
}

func (s *stuckStatusStore) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if name == runstatus.File && s.stall.Load() {
		<-s.release
	}
	return s.Store.Write(ctx, name, data, perm)
}

// TestChangeServedWhileStatusWriteStalls: writing the status file (an
// fsync) does not hold back the next change.
func TestChangeServedWhileStatusWriteStalls(t *testing.T) {
	stuck := &stuckStatusStore{release: make(chan struct{})}
	f := newIncrFixtureOver(t, 2, func(s state.Store) state.Store { stuck.Store = s; return stuck })
	stuck.stall.Store(true) // from now on, every status write stalls
	// Released before the fixture's cleanup stops serve (cleanups run
	// last first), so that its last status write can finish.
	t.Cleanup(func() { close(stuck.release) })
	for i := range 3 {
		id := fmt.Sprintf("late%d", i)
		f.cert(id, id+".example.com")
		f.update(func(cfg *state.Config) {
			cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceManual})
		})
		f.until(id+" served while the status write stalls", func() bool {
			return slices.Equal(f.served(id+".example.com"), []string{id + ".example.com"})
		})
	}
}

// BenchmarkIncrementalReload is serve applying one changed mapping (its
// record rewritten by hand) over n others: read, validate, index, swap.
func BenchmarkIncrementalReload(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			store := benchFixture(b, n)
			s := New(Options{Store: store, Log: discardLog})
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer stopServer(s)
			name := state.RecordName("m000000")
			rec, err := os.ReadFile(filepath.Join(store.Root(), filepath.FromSlash(name)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				// Another upstream each time: a changed mapping, new entry.
				edited := fmt.Appendf(slices.Clone(rec), "upstream = 'http://127.0.0.1:%d'\n", 1024+i%60000)
				if err := os.WriteFile(filepath.Join(store.Root(), filepath.FromSlash(name)), edited, 0o600); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				s.mu.Lock()
				s.pollWith(context.Background(), state.Changed{Names: []string{name}})
				lastErr := s.lastErr
				s.mu.Unlock()
				if lastErr != "" {
					b.Fatal(lastErr)
				}
			}
		})
	}
}

// TestNoFailedHandshakeWhileAHostMoves: a host moved from one mapping to
// another in one change is served by one or the other throughout, never
// by the fallback. Bounded: 20 moves.
func TestNoFailedHandshakeWhileAHostMoves(t *testing.T) {
	f := newIncrFixture(t, 2)
	// Both certificates name the shared host, so either serves it.
	f.cert("m00", "m00.example.com", "shared.example.com")
	f.cert("m01", "m01.example.com", "shared.example.com")
	f.update(func(cfg *state.Config) { cfg.Mappings[0].Hosts = append(cfg.Mappings[0].Hosts, "shared.example.com") })
	f.until("shared served", func() bool { return slices.Contains(f.served("shared.example.com"), "shared.example.com") })
	stop := make(chan struct{})
	done := make(chan [2]int)
	go func() {
		var n [2]int // ok, failed
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if got := f.served("shared.example.com"); slices.Contains(got, "shared.example.com") {
				n[0]++
			} else {
				n[1]++
				t.Logf("handshake for the moving host got %v", got)
			}
		}
	}()
	for i := range 20 {
		from, to := i%2, (i+1)%2
		f.update(func(cfg *state.Config) {
			cfg.Mappings[from].Hosts = cfg.Mappings[from].Hosts[:1]
			cfg.Mappings[to].Hosts = append(cfg.Mappings[to].Hosts, "shared.example.com")
		})
		time.Sleep(30 * time.Millisecond)
	}
	close(stop)
	n := <-done
	t.Logf("handshakes while the host moved: %d ok, %d failed", n[0], n[1])
	if n[1] > 0 || n[0] == 0 {
		t.Errorf("handshakes while the host moved: %d ok, %d failed", n[0], n[1])
	}
	if e := f.lastErr(); e != "" {
		t.Errorf("reload error: %s", e)
	}
}
