package public

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// counts is the "web" listener's handshake counts by result name, and its
// fallback count.
func (f *fixture) counts() (map[string]uint64, int64) {
	f.t.Helper()
	for _, l := range f.s.Metrics(nil) {
		if l.Name == "web" {
			got := map[string]uint64{}
			for i, n := range l.Handshakes() {
				got[HandshakeResults[i]] = n
			}
			return got, l.FallbackHandshakes()
		}
	}
	f.t.Fatal("no listener web in Metrics")
	return nil, 0
}

// Each handshake is counted once under its result: a mapping's
// certificate, a resumed session, the fallback, the reject alert, and a
// handshake that does not complete.
func TestHandshakeCounts(t *testing.T) {
	f := newFixture(t, []state.Mapping{
		{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")},
	}, nil, Options{})
	tls13 := &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4), MinVersion: tls.VersionTLS13}
	tls12 := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	steps := []struct {
		name string
		do   func() error
		want map[string]uint64 // added by the step
	}{
		{"mapping", func() error { _, _, _, err := f.get(tls13, "app.example.com"); return err }, map[string]uint64{"ok": 1}},
		// TLS 1.3 resumes without selecting a certificate.
		{"resumed", func() error {
			cs, _, _, err := f.get(tls13, "app.example.com")
			if err == nil && !cs.DidResume {
				t.Error("the second connection did not resume")
			}
			return err
		}, map[string]uint64{"resumed": 1}},
		{"TLS 1.2", func() error { _, _, _, err := f.get(tls12, "app.example.com"); return err }, map[string]uint64{"ok": 1}},
		{"fallback", func() error { _, _, _, err := f.get(tls12, "nobody.example.com"); return err }, map[string]uint64{"fallback": 1}},
		{"garbage", func() error {
			c, err := net.Dial("tcp", f.addr())
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("\x16\x03\x01\x00\x05hello"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [64]byte
			c.Read(b[:]) // the server's alert, then EOF
			return nil
		}, map[string]uint64{"failed": 1}},
		{"rejected", func() error {
			f.cfg.Listeners[0].Fallback = state.FallbackReject
			f.reload()
			if _, _, _, err := f.get(tls12, "nobody.example.com"); err == nil {
				t.Error("fallback reject: the handshake succeeded")
			}
			return nil
		}, map[string]uint64{"rejected": 1, "failed": 1}},
	}
	before, fb := f.counts()
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// The server counts a failure after the client saw it: wait for it.
		var got map[string]uint64
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, fb = f.counts()
			if got["failed"] >= before["failed"]+st.want["failed"] || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, r := range HandshakeResults {
			if got[r]-before[r] != st.want[r] {
				t.Errorf("%s: %s went from %d to %d, want +%d", st.name, r, before[r], got[r], st.want[r])
			}
		}
		before = got
	}
	if want := int64(before["fallback"] + before["rejected"]); fb != want {
		t.Errorf("FallbackHandshakes = %d, want fallback+rejected = %d", fb, want)
	}
}

// Reloads counts each reload's outcome, and the last success's time moves
// only with a success; Metrics walks every served mapping.
func TestReloadCountsAndWalk(t *testing.T) {
	f := newFixture(t, []state.Mapping{
		{ID: "app", Hosts: []string{"app.example.com"}},
		{ID: "files", Hosts: []string{"files.example.com"}},
	}, map[string]bool{"files": true}, Options{})
	r := f.s.Reloads()
	if r.OK != 0 || r.Failed != 0 || !r.LastSuccessAt.Equal(f.s.started) {
		t.Fatalf("after start: %+v, want no reloads and the start time %v", r, f.s.started)
	}
	poll := func() {
		f.s.mu.Lock()
		f.s.poll(context.Background(), true)
		f.s.mu.Unlock()
	}
	toml := filepath.Join(f.dir, state.ConfigFile)
	good, err := os.ReadFile(toml)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(toml, []byte("schema_version = [broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	poll()
	if r = f.s.Reloads(); r.OK != 0 || r.Failed != 1 || !r.LastSuccessAt.Equal(f.s.started) {
		t.Errorf("after a failed reload: %+v, want 0 ok, 1 failed, the start time", r)
	}
	time.Sleep(10 * time.Millisecond) // a later success is a later time
	if err := os.WriteFile(toml, good, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	poll()
	if r = f.s.Reloads(); r.OK != 1 || r.Failed != 1 || r.LastSuccessAt.Before(start.Truncate(time.Microsecond)) {
		t.Errorf("after a reload that succeeded: %+v, want 1 ok, 1 failed, a time after %v", r, start)
	}
	var walked []string
	f.s.Metrics(func(listener string, m state.Mapping) {
		walked = append(walked, listener+"/"+m.ID+"/"+m.Source)
	})
	slices.Sort(walked)
	if want := []string{"web/app/manual", "web/files/manual"}; !slices.Equal(walked, want) {
		t.Errorf("Metrics walked %q, want %q", walked, want)
	}
}
