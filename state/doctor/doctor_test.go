package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/backup"
)

// allIDs is the order of the report; ids are part of the JSON contract.
var allIDs = []string{
	IDConfig, IDPermissions, IDLock, IDRestoreStaging, IDOrphans, IDMode, IDListen, IDProvidedFiles, IDPublicURL, IDPublicURLCovered,
	IDExtraHosts, IDCA, IDServerCertificate, IDChain, IDCABackup, IDNetwork, IDACMEAccount, IDCAA, IDWildcardChallenge,
	IDDNSCredential, IDChallengePorts, IDIPReachable, IDCoverage, IDExpiry, IDRenewalDue, IDLastRenewal, IDBackoff, IDListenersServing, IDListenersFallback,
	IDStoreReplicas, IDStoreConnected,
}

// healthy is a state in which every check is ok.
func healthy(t *testing.T) *state.Dir {
	t.Helper()
	s := newStore(t)
	initCA(t, s, "192.0.2.10")
	addListener(t, s, state.Listener{Name: "web", Addr: ":443", HTTPAddr: ":80"})
	addMapping(t, s, state.Mapping{ID: "app", Listener: "web", Hosts: []string{"app.example.com"}, Source: state.SourceSelfSigned})
	if _, err := backup.Create(context.Background(), s, &bytes.Buffer{}, backup.CreateOptions{Now: now0}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRun(t *testing.T) {
	s := healthy(t)
	rep := Run(context.Background(), input(s))
	var ids []string
	for _, c := range rep.Checks {
		ids = append(ids, c.ID)
		if c.Status != OK {
			t.Errorf("healthy state: %+v", c)
		}
	}
	if !slices.Equal(ids, allIDs) {
		t.Errorf("ids %v, want %v", ids, allIDs)
	}
	if !rep.OK || len(rep.Problems(true)) != 0 {
		t.Errorf("healthy report not ok: %+v", rep)
	}

	// JSON: ok, checks[] with id, status, message, hint.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OK     *bool `json:"ok"`
		Checks []map[string]any
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.OK == nil || len(doc.Checks) != len(allIDs) {
		t.Fatalf("JSON %s: %v", b, err)
	}
	for _, k := range []string{"id", "status", "message", "hint"} {
		if _, ok := doc.Checks[0][k]; !ok {
			t.Errorf("checks[0] lacks %q: %v", k, doc.Checks[0])
		}
	}

	// A warning fails only with Strict.
	in := input(s)
	in.Settings.PublicURL = ""
	rep = Run(context.Background(), in)
	if !rep.OK || rep.Count(Warn) != 1 || len(rep.Problems(false)) != 0 || len(rep.Problems(true)) != 1 {
		t.Errorf("one warning: ok=%v warns=%d problems=%v", rep.OK, rep.Count(Warn), rep.Problems(true))
	}
	in.Strict = true
	if rep = Run(context.Background(), in); rep.OK {
		t.Errorf("--strict with a warning is ok")
	}

	// A failure fails.
	in = input(s)
	in.Settings.ExtraHosts = []string{"not-on-the-cert.example.com"}
	rep = Run(context.Background(), in)
	if rep.OK || len(rep.Problems(false)) != 1 || rep.Problems(false)[0].ID != IDExtraHosts {
		t.Errorf("one failure: %+v", rep.Problems(false))
	}
}

// TestRunChangesNothing: doctor only reads, even a state it finds broken.
func TestRunChangesNothing(t *testing.T) {
	s := newStore(t)
	writeConfig(t, s, wildcardHTTP01)
	before := tree(t, s.Root())
	in := input(s)
	in.Settings.PublicURL = "https://localhost:8443"
	rep := Run(context.Background(), in)
	if rep.OK {
		t.Error("a broken state is ok")
	}
	if after := tree(t, s.Root()); !maps.Equal(before, after) {
		t.Errorf("doctor changed the state:\n%v\n%v", before, after)
	}
	// A directory that does not exist is not created.
	missing := newStore(t)
	Run(context.Background(), input(missing))
	if _, err := os.Stat(missing.Root()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("doctor created %s: %v", missing.Root(), err)
	}
}

func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if de.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
