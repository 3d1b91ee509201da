package mappings

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

func TestRemoveUnknown(t *testing.T) {
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("keep", "web", 0, "keep.example.com"))
	for _, id := range []string{"nope", "../keep", ""} {
		before := snapshot(t, root)
		_, err := Remove(context.Background(), s, id)
		wantFault(t, err, fault.NotFound, fmt.Sprintf("mapping %q does not exist", id))
		wantHint(t, err, "p2ptls mapping list")
		assertUnchanged(t, before, root)
	}
}

func TestRegenerate(t *testing.T) {
	s, root := newStore(t)
	m := mustAdd(t, s, selfSignedIn("dev", "web", 30, "dev.example.com", "*.dev.example.com"))
	old, err := Load(context.Background(), s, m)
	if err != nil {
		t.Fatal(err)
	}
	later := now0.Add(25 * day)
	if err := Regenerate(context.Background(), s, "dev", later); err != nil {
		t.Fatal(err)
	}
	cur, err := Load(context.Background(), s, m)
	if err != nil {
		t.Fatal(err)
	}
	o, n := old.Chain[0], cur.Chain[0]
	if o.SerialNumber.Cmp(n.SerialNumber) == 0 || string(old.KeyPEM) == string(cur.KeyPEM) {
		t.Error("regenerate kept the serial number or the key")
	}
	if got := n.NotAfter.Sub(later); got != 30*day {
		t.Errorf("new certificate lives %v after now, want the mapping's 30 days", got)
	}
	if strings.Join(n.DNSNames, " ") != "dev.example.com *.dev.example.com" {
		t.Errorf("new certificate names %q", n.DNSNames)
	}
	meta, err := LoadMeta(context.Background(), s, "dev")
	if err != nil || !meta.IssuedAt.Equal(later) || !meta.NotAfter.Equal(n.NotAfter) {
		t.Errorf("meta after regenerate: %+v, %v", meta, err)
	}
	wantMode(t, storeFile(root, keyName("dev")), state.SecretMode)
	wantMode(t, storeFile(root, certName("dev")), state.PublicMode)

	// A self-signed mapping whose files are gone gets them back.
	if err := s.Delete(context.Background(), MappingDir("dev")); err != nil {
		t.Fatal(err)
	}
	if err := Regenerate(context.Background(), s, "dev", later); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), s, m); err != nil {
		t.Errorf("Load after regenerating missing files: %v", err)
	}
}

func TestRegenerateRefuses(t *testing.T) {
	leaf := issue(t, now0, 90*day, "shop.example.com")
	files := t.TempDir()
	s, root := newStore(t)
	mustAdd(t, s, manual("up", leaf.CertPEM, leaf.KeyPEM, "shop.example.com"))
	mustAdd(t, s, Input{Mapping: state.Mapping{ID: "disk", Listener: "api", Hosts: []string{"shop.example.com"}, Source: state.SourceFile,
		CertFile: writeFile(t, files, "c.pem", leaf.CertPEM), KeyFile: writeFile(t, files, "k.pem", leaf.KeyPEM)}})
	mustAdd(t, s, acmeIn("issued", "http-01", "", "www.example.com"))
	tests := []struct {
		id   string
		kind fault.Kind
		msg  string
		hint string
	}{
		{"up", fault.Failure, "uploaded certificate", "mapping add --id up"},
		{"disk", fault.Failure, "serves the files", "replace the files on disk"},
		{"issued", fault.Failure, `mapping "issued" is issued by ACME now`, "p2ptls cert issue issued"},
		{"nope", fault.NotFound, `mapping "nope" does not exist`, "p2ptls mapping list"},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			before := snapshot(t, root)
			err := Regenerate(context.Background(), s, tc.id, now0)
			wantFault(t, err, tc.kind, tc.msg)
			wantHint(t, err, tc.hint)
			assertUnchanged(t, before, root)
		})
	}
}

func TestRegenerateRefusesBadDaysInAHandEditedConfig(t *testing.T) {
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("dev", "web", 30, "dev.example.com"))
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		c := tx.Config
		c.Mappings[0].Days = 1000
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	err = Regenerate(context.Background(), s, "dev", now0)
	wantFault(t, err, fault.Invalid, "1000 days")
	wantHint(t, err, "mappings/dev.toml")
	assertUnchanged(t, before, root)
}

func TestAddReplacesALeftoverDirectory(t *testing.T) {
	s, root := newStore(t)
	for _, name := range []string{certName("dev"), MappingDir("dev") + "/extra.txt", certName("www-example-com")} {
		if err := s.Write(context.Background(), name, []byte("left by a crashed remove"), state.PublicMode); err != nil {
			t.Fatal(err)
		}
	}
	m := mustAdd(t, s, selfSignedIn("dev", "web", 0, "dev.example.com"))
	if _, err := Load(context.Background(), s, m); err != nil {
		t.Errorf("Load: %v", err)
	}
	if _, err := os.Stat(storeFile(root, MappingDir("dev")+"/extra.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the leftover file survived: %v", err)
	}
	// An ACME mapping has no files until issued: the leftover certificate
	// must not pass for its own.
	a := mustAdd(t, s, acmeIn("", "http-01", "", "www.example.com"))
	if _, err := os.Stat(storeFile(root, MappingDir(a.ID))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the leftover directory of %s survived: %v", a.ID, err)
	}
	if info, _, err := Show(context.Background(), s, mustConfig(t, s), a.ID, now0); err != nil || info.Status != StatusPending {
		t.Errorf("Show = %+v, %v; want pending", info, err)
	}
}

// failingStore refuses to save the desired state: p2ptls.toml and the
// mapping records, written alone or in a change.
type failingStore struct{ *state.Dir }

func desiredState(name string) bool {
	return name == state.ConfigFile || strings.HasPrefix(name, state.RecordsDir+"/")
}

func (f failingStore) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if desiredState(name) {
		return errors.New("disk full")
	}
	return f.Dir.Write(ctx, name, data, perm)
}

func (f failingStore) Apply(ctx context.Context, c state.Change) error {
	for _, w := range c.Writes {
		if desiredState(w.Name) {
			return errors.New("disk full")
		}
	}
	return f.Dir.Apply(ctx, c)
}

func TestAddRemovesTheFilesWhenTheConfigCannotBeSaved(t *testing.T) {
	s, root := newStore(t)
	before := snapshot(t, root)
	_, _, err := Add(context.Background(), failingStore{s}, selfSignedIn("dev", "web", 0, "dev.example.com"), now0)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Add = %v, want the save error", err)
	}
	// certs/public stays (an empty directory); the mapping's is gone.
	delete(before, "certs")
	after := snapshot(t, root)
	delete(after, "certs")
	delete(after, filepath.FromSlash(PublicDir))
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was left behind", p)
		}
	}
	if cfg := mustConfig(t, s); len(cfg.Mappings) != 0 {
		t.Errorf("mappings: %+v", cfg.Mappings)
	}
}

// Two processes adding the same host to one listener: the lock lets exactly
// one of them in.
func TestConcurrentAddsOfOneHost(t *testing.T) {
	s, _ := newStore(t)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = Add(context.Background(), s, selfSignedIn(fmt.Sprintf("m%d", i), "web", 0, "race.example.com"), now0)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "already mapped") {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d adds succeeded, want 1", ok)
	}
	if cfg := mustConfig(t, s); len(cfg.Mappings) != 1 {
		t.Errorf("mappings: %+v", cfg.Mappings)
	}
}

func TestIDFromHost(t *testing.T) {
	long := strings.Repeat("a", 60) + ".example.com"
	tests := []struct{ host, want string }{
		{"*.example.com", "wildcard-example-com"},
		{"a.example.com", "a-example-com"},
		{"xn--bcher-kva.example", "xn--bcher-kva-example"},
		{long, strings.Repeat("a", 60) + "-ex"},
		{strings.Repeat("b", 62) + ".example.com", strings.Repeat("b", 62)}, // no trailing "-"
	}
	for _, tc := range tests {
		got := idFromHost(tc.host)
		if got != tc.want {
			t.Errorf("idFromHost(%q) = %q, want %q", tc.host, got, tc.want)
		}
		if err := hostname.ValidateName("mapping id", got); err != nil {
			t.Errorf("idFromHost(%q) = %q: %v", tc.host, got, err)
		}
	}
}

func TestGeneratedIDsStayUniqueAndShort(t *testing.T) {
	s, _ := newStore(t)
	host := strings.Repeat("c", 63) + ".example.com"
	a := mustAdd(t, s, selfSignedIn("", "web", 0, host))
	b := mustAdd(t, s, selfSignedIn("", "api", 0, host))
	if a.ID != strings.Repeat("c", 63) || b.ID != strings.Repeat("c", 61)+"-2" {
		t.Errorf("ids %q and %q", a.ID, b.ID)
	}
}

func TestAddKeepsTheCallersHosts(t *testing.T) {
	s, _ := newStore(t)
	hosts := []string{"Dev.Example.com."}
	if m := mustAdd(t, s, selfSignedIn("", "web", 0, hosts...)); m.Hosts[0] != "dev.example.com" {
		t.Errorf("saved hosts %q", m.Hosts)
	}
	if hosts[0] != "Dev.Example.com." {
		t.Errorf("Add changed the caller's slice: %q", hosts)
	}
}
