package doctor

import (
	"context"
	"testing"

	"github.com/p2pstream/p2ptls/state/runstatus"
)

func TestServing(t *testing.T) {
	s := newStore(t)
	want(t, run(input(s), checkServing), IDListenersServing, OK, "serve has not run")
	writeStatus(t, s, true, runstatus.Listener{Name: "web", Addr: ":443", Listening: true})
	want(t, run(input(s), checkServing), IDListenersServing, OK, "1 listener")
	writeStatus(t, s, true, runstatus.Listener{Name: "web", Addr: ":443", Listening: false, Error: "address already in use"})
	c := run(input(s), checkServing)
	want(t, c, IDListenersServing, Fail, "listener web (:443) is down: address already in use")
	wantHint(t, c, "free the address")
	writeStatus(t, s, false, runstatus.Listener{Name: "web", Addr: ":443", Listening: false})
	want(t, run(input(s), checkServing), IDListenersServing, OK, "serve is not running")
}

func TestServingReloadError(t *testing.T) {
	s := newStore(t)
	writeStatus(t, s, true, runstatus.Listener{Name: "web", Addr: ":443", Listening: true})
	st, err := runstatus.Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st.LastReloadError = "p2ptls.toml: line 3: boom"
	if err := runstatus.Write(context.Background(), s, st); err != nil {
		t.Fatal(err)
	}
	want(t, run(input(s), checkServing), IDListenersServing, Warn, "did not apply the last change", "line 3: boom")
}

func TestFallback(t *testing.T) {
	hits := runstatus.Listener{Name: "web", Addr: ":443", Listening: true, FallbackHits: map[string]int64{"unmapped.example.net": 3, "": 1}}
	t.Run("no serve yet", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkFallback), IDListenersFallback, OK, "serve has not run")
	})
	t.Run("running without hits", func(t *testing.T) {
		s := newStore(t)
		writeStatus(t, s, true, runstatus.Listener{Name: "web", Addr: ":443", Listening: true})
		want(t, run(input(s), checkFallback), IDListenersFallback, OK, "no fallback handshake")
	})
	t.Run("running with hits", func(t *testing.T) {
		s := newStore(t)
		writeStatus(t, s, true, hits)
		c := run(input(s), checkFallback)
		want(t, c, IDListenersFallback, Fail, "listener web: 4 fallback handshakes", "unmapped.example.net=3, (no SNI)=1", "public deployment failure")
		wantHint(t, c, "mapping add --listener web")
	})
	t.Run("hits of a serve that stopped", func(t *testing.T) {
		s := newStore(t)
		writeStatus(t, s, false, hits)
		c := run(input(s), checkFallback)
		want(t, c, IDListenersFallback, Warn, "the last serve", "unmapped.example.net=3")
		wantHint(t, c, "counts start at zero")
	})
}
