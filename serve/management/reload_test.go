package management

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// A pair kept in the state is read again only when the store signals a
// change, not on a timer; each signal reloads it.
func TestLiveCertFollowsTheSignal(t *testing.T) {
	pairs := make([]*pki.KeyPair, 2)
	for i := range pairs {
		kp, err := pki.SelfSigned(pki.ParseNames([]string{"127.0.0.1"}), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = kp
	}
	var reads, current atomic.Int64
	source := func() ([]byte, []byte, error) {
		reads.Add(1)
		kp := pairs[current.Load()]
		return kp.CertPEM, kp.KeyPEM, nil
	}
	signals := make(chan struct{}, 1)
	lc, err := newLiveCert(source, func(context.Context) <-chan struct{} { return signals }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); lc.watch(ctx) }()
	t.Cleanup(func() { cancel(); close(signals); <-done })

	deadline := time.Now().Add(10 * time.Second)
	for reads.Load() < 2 && time.Now().Before(deadline) { // load, then the check after subscribing
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // longer than the file poll's second
	if n := reads.Load(); n != 2 {
		t.Fatalf("the pair was read %d times without a signal, want 2 (load, and once after subscribing)", n)
	}
	current.Store(1)
	signals <- struct{}{}
	want := pairs[1].Cert.Raw
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		if c, _ := lc.getCertificate(nil); c != nil && string(c.Certificate[0]) == string(want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the new pair was not served after the signal")
}

// In mode auto, a server certificate re-issued by another process ("p2ptls
// ca renew-server") is served without a restart.
func TestAutoModeServesARenewedCertificate(t *testing.T) {
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{})
	served := func() []byte {
		conn, err := tls.Dial("tcp", ls.addr, &tls.Config{RootCAs: ls.roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	before := served()
	kp, err := statemgmt.RenewServer(context.Background(), ta.store, ls.m.o.Settings.WantedNames(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		got := served()
		if string(got) == string(kp.Cert.Raw) {
			return
		}
		if string(got) != string(before) {
			t.Fatal("served a certificate that is neither the old nor the renewed one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the renewed management certificate was not served within 15 s")
}
