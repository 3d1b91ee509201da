package etcdstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// TestUpdateThroughTheStore runs state's own transaction (Update: lock,
// load, change, one Apply) on etcd, from two stores as two replicas
// would, and reads the result back with LoadConfig.
func TestUpdateThroughTheStore(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("update")
	a := openTest(t, c, prefix)
	b := openTest(t, c, prefix)
	a.wait, b.wait = time.Minute, time.Minute
	ctx := testCtx(t)
	if _, err := state.AddListener(ctx, a, state.Listener{Name: "web", Addr: "127.0.0.1:8443"}); err != nil {
		t.Fatal(err)
	}
	add := func(s *Store, id string) error {
		return state.Update(ctx, s, "mapping add", func(tx *state.Tx) error {
			tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: 30})
			return tx.Write(ctx, "certs/public/"+id+"/cert.pem", []byte("cert of "+id), state.PublicMode)
		})
	}
	errs := make(chan error, 20)
	for i := range 10 {
		go func() { errs <- add(a, fmt.Sprintf("a%d", i)) }()
		go func() { errs <- add(b, fmt.Sprintf("b%d", i)) }()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := state.LoadConfig(ctx, openTest(t, c, prefix))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Mappings) != 20 || len(cfg.Listeners) != 1 {
		t.Fatalf("loaded %d mappings and %d listeners, want 20 and 1", len(cfg.Mappings), len(cfg.Listeners))
	}
	// A failing change writes nothing.
	rev, _ := a.Revision(ctx)
	err = state.Update(ctx, a, "mapping add", func(tx *state.Tx) error {
		tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: "bad", Listener: "nowhere", Hosts: []string{"bad.example.com"}, Source: state.SourceSelfSigned})
		return tx.Write(ctx, "certs/public/bad/cert.pem", []byte("x"), state.PublicMode)
	})
	if err == nil {
		t.Fatal("a mapping on a missing listener was saved")
	}
	if after, _ := a.Revision(ctx); after != rev {
		t.Error("a refused change moved the revision")
	}
	if _, err := a.Read(ctx, "certs/public/bad/cert.pem"); err == nil {
		t.Error("a refused change wrote its file")
	}
}

// TestReplaceKeepsTheOldStateBeside: the kept content is a p2ptls store
// of its own at the URL Replace reports.
func TestReplaceKeepsTheOldStateBeside(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("restore")
	s := openTest(t, c, prefix)
	ctx := testCtx(t)
	mustDo(t, s.Write(ctx, "p2ptls.toml", []byte("old"), state.SecretMode))
	mustDo(t, s.Write(ctx, "certs/management/ca.key", []byte("old key"), state.SecretMode))
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	keep := func(context.Context, state.Store) (bool, error) { return true, nil }
	fill := func(st state.Staging) error {
		w, err := st.Create("p2ptls.toml", state.SecretMode)
		if err != nil {
			return err
		}
		_, err = w.Write([]byte("new"))
		return err
	}
	var kept []string
	for range 2 { // the second in the same second gets a counter
		r, err := s.Replace(ctx, fill, state.ReplaceOptions{Now: now, Check: keep})
		mustDo(t, err)
		kept = append(kept, r.Kept)
	}
	want := fmt.Sprintf("%s/%s.pre-restore-20261202T030000Z", "etcd://"+c.Endpoints()[0], prefix)
	if kept[0] != want || kept[1] != want+"-2" {
		t.Fatalf("kept = %q, want %q and -2", kept, want)
	}
	old, err := OpenURL(ctx, kept[0], func(string) string { return "" }, time.Second)
	mustDo(t, err)
	defer old.Close()
	b, err := old.Read(ctx, "certs/management/ca.key")
	if err != nil || string(b) != "old key" {
		t.Fatalf("kept ca.key = %q, %v", b, err)
	}
	if info, err := old.Stat(ctx, "certs/management/ca.key"); err != nil || info.Mode().Perm() != state.SecretMode {
		t.Errorf("kept ca.key mode = %v, %v; want 0600", info, err)
	}
	if _, err := s.Read(ctx, "certs/management/ca.key"); err == nil {
		t.Error("the old key is still in the restored store")
	}
}
