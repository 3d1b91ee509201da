package management

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/etcdstore"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

var autoSet = Settings{Mode: ModeAuto, ExtraHosts: []string{"mgmt.example.com"}}

// rotStores are the stores every rotation test runs on: the directory,
// the in-memory store and a real etcd (one member, a prefix per store).
func rotStores(t *testing.T) map[string]func(t *testing.T) state.Store {
	c := etcdtest.Start(t)
	var n atomic.Int64
	return map[string]func(t *testing.T) state.Store{
		"dir": func(t *testing.T) state.Store { s, _ := newStore(t); return s },
		"mem": func(t *testing.T) state.Store { return statetest.NewMem("mem", time.Second) },
		"etcd": func(t *testing.T) state.Store {
			s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), Prefix: fmt.Sprintf("rot%d", n.Add(1))}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
}

// served returns the server certificate's leaf and the certificates after it.
func served(t *testing.T, s state.Store) (*x509.Certificate, []*x509.Certificate) {
	t.Helper()
	b, err := s.Read(context.Background(), ServerCertFile)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pki.ParseCertChain(b)
	if err != nil {
		t.Fatal(err)
	}
	return chain[0], chain[1:]
}

// verifies reports whether a TLS client trusting roots accepts what is
// served for mgmt.example.com.
func verifies(t *testing.T, s state.Store, roots ...*x509.Certificate) error {
	t.Helper()
	leaf, inter := served(t, s)
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		rp.AddCert(c)
	}
	for _, c := range inter {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, DNSName: "mgmt.example.com", CurrentTime: time.Now()})
	return err
}

func mustCert(t *testing.T, s state.Store, name string) *x509.Certificate {
	t.Helper()
	c, err := readCert(context.Background(), s, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRotationChainsAtEveryStage(t *testing.T) {
	ctx := context.Background()
	for name, open := range rotStores(t) {
		t.Run(name, func(t *testing.T) {
			for _, end := range []string{StageFinished, "abort from " + StageStarted, "abort from " + StageSwitched} {
				t.Run(end, func(t *testing.T) {
					s := open(t)
					now := time.Now()
					mustInit(t, s, autoSet.WantedNames(), now)
					old := mustCert(t, s, CACertFile)
					if !CrossVerifiable(old) {
						t.Fatal("a new CA allows no intermediate: its rotation cannot serve old-only agents after switch")
					}
					if _, err := StartRotation(ctx, s, autoSet, DefaultOverlap, now); err != nil {
						t.Fatal(err)
					}
					next := mustCert(t, s, NextCertFile)
					if old.Subject.String() == next.Subject.String() || next.Subject.CommonName != caCommonName {
						t.Errorf("subjects: old %q, next %q: want distinct, both CN %q", old.Subject, next.Subject, caCommonName)
					}
					all := func(stage string, wantOld, wantNext bool) {
						t.Helper()
						if err := CheckServedChain(ctx, s, time.Now()); err != nil {
							t.Errorf("%s: CheckServedChain: %v", stage, err)
						}
						for _, tc := range []struct {
							who   string
							roots []*x509.Certificate
							want  bool
						}{{"old only", []*x509.Certificate{old}, wantOld}, {"next only", []*x509.Certificate{next}, wantNext}, {"bundle", []*x509.Certificate{old, next}, true}} {
							if err := verifies(t, s, tc.roots...); (err == nil) != tc.want {
								t.Errorf("%s: client with %s: verify error %v, want success %v", stage, tc.who, err, tc.want)
							}
						}
					}
					issuing := func(stage string, want *x509.Certificate) {
						t.Helper()
						if got, err := IssuingCA(ctx, s); err != nil || !got.Equal(want) {
							t.Errorf("%s: IssuingCA is not the CA that issued the leaf (%v)", stage, err)
						}
					}
					issuing(StageStarted, old)
					leaf, _ := served(t, s)
					if leaf.CheckSignatureFrom(old) != nil {
						t.Error("started: the leaf is not from the current CA")
					}
					all(StageStarted, true, true)
					if end == "abort from "+StageStarted {
						abortAndCheck(t, s, old, next, leaf)
						return
					}
					if _, err := SwitchRotation(ctx, s, autoSet, false, now); err != nil {
						t.Fatal(err)
					}
					issuing(StageSwitched, next)
					leaf, _ = served(t, s)
					if leaf.CheckSignatureFrom(next) != nil {
						t.Error("switched: the leaf is not from the next CA")
					}
					all(StageSwitched, true, true)
					if end == "abort from "+StageSwitched {
						abortAndCheck(t, s, old, next, nil)
						return
					}
					if _, err := FinishRotation(ctx, s, autoSet, false, now); err != nil {
						t.Fatal(err)
					}
					all(StageFinished, false, true)
					issuing(StageFinished, next)
					if _, inter := served(t, s); len(inter) != 0 {
						t.Errorf("finished: %d certificates after the leaf, want none", len(inter))
					}
					if got := mustCert(t, s, CACertFile); !got.Equal(next) {
						t.Error("finished: ca.crt is not the next CA")
					}
					rec, err := ReadCARecord(ctx, s)
					if err != nil || rec.FingerprintSHA256 != pki.Fingerprint(next) {
						t.Errorf("finished: the CA record %+v (%v) does not name the new CA", rec, err)
					}
					r, _ := readRotationFile(ctx, s)
					if _, err := s.Read(ctx, r.Retired+"/ca.crt"); err != nil {
						t.Errorf("finished: old CA not retired: %v", err)
					}
					if _, err := s.Read(ctx, r.Retired+"/ca.key"); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("finished without --keep-old-key: the old key is there (%v)", err)
					}
					if _, err := s.Read(ctx, NextKeyFile); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("finished: next/ is still there (%v)", err)
					}
					// After finish, a new rotation starts from the new CA.
					if _, err := StartRotation(ctx, s, autoSet, DefaultOverlap, now); err != nil {
						t.Fatalf("a second rotation: %v", err)
					}
					if err := verifies(t, s, next); err != nil {
						t.Errorf("a second rotation, started: %v", err)
					}
				})
			}
		})
	}
}

// abortAndCheck aborts and checks that the current CA alone is served.
func abortAndCheck(t *testing.T, s state.Store, old, next, leaf *x509.Certificate) {
	t.Helper()
	if _, err := AbortRotation(context.Background(), s, autoSet, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, inter := served(t, s)
	if len(inter) != 0 || got.CheckSignatureFrom(old) != nil {
		t.Errorf("aborted: served a leaf not from the current CA or with %d more certificates", len(inter))
	}
	if leaf != nil && !got.Equal(leaf) {
		t.Error("aborted from started: the leaf was re-issued; it could be kept")
	}
	if err := verifies(t, s, old); err != nil {
		t.Errorf("aborted: old-only client: %v", err)
	}
	if err := verifies(t, s, next); err == nil {
		t.Error("aborted: a next-only client still verifies")
	}
	if r, err := ReadRotation(context.Background(), s); r != nil || err != nil {
		t.Errorf("aborted: ReadRotation = %+v, %v; want none", r, err)
	}
	if _, err := s.Read(context.Background(), NextDir+"/ca.key"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("aborted: next CA key left (%v)", err)
	}
}

// TestRotationStepsIdempotentAndOrdered: a step run again at the stage it
// made changes nothing; a step out of order is refused (exit 2) and
// changes nothing.
func TestRotationStepsIdempotentAndOrdered(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	now := time.Now()
	mustInit(t, s, autoSet.WantedNames(), now)
	start := func() (*Step, error) { return StartRotation(ctx, s, autoSet, DefaultOverlap, now) }
	sw := func() (*Step, error) { return SwitchRotation(ctx, s, autoSet, false, now) }
	finish := func() (*Step, error) { return FinishRotation(ctx, s, autoSet, true, now) }
	abort := func() (*Step, error) { return AbortRotation(ctx, s, autoSet, now) }
	refused := func(what string, step func() (*Step, error), msg string) {
		t.Helper()
		before := statetest.Snapshot(t, root)
		_, err := step()
		statetest.WantFault(t, err, fault.Invalid, msg)
		statetest.AssertSame(t, before, statetest.Snapshot(t, root))
		if t.Failed() {
			t.Fatalf("%s", what)
		}
	}
	again := func(what string, step func() (*Step, error)) {
		t.Helper()
		before := statetest.Snapshot(t, root)
		st, err := step()
		if err != nil || st.Changed {
			t.Fatalf("%s again: %+v, %v; want unchanged", what, st, err)
		}
		statetest.AssertSame(t, before, statetest.Snapshot(t, root))
	}
	refused("switch before start", sw, "no management CA rotation is open")
	refused("finish before start", finish, "no management CA rotation is open")
	refused("abort before start", abort, "nothing to abort")
	if st, err := start(); err != nil || !st.Changed || st.Rotation.Stage != StageStarted {
		t.Fatalf("start: %+v, %v", st, err)
	}
	again("start", start)
	refused("finish before switch", finish, "at stage started")
	if _, err := sw(); err != nil {
		t.Fatal(err)
	}
	again("switch", sw)
	refused("start while switched", start, "at stage switched")
	if _, err := finish(); err != nil {
		t.Fatal(err)
	}
	again("finish", finish)
	refused("abort after finish", abort, "cannot be aborted")
	refused("switch after finish", sw, "no management CA rotation is open")
	r, _ := readRotationFile(ctx, s)
	if _, err := s.Read(ctx, r.Retired+"/ca.key"); err != nil {
		t.Errorf("finish --keep-old-key: the old key is not kept: %v", err)
	}
	if fi, err := s.Stat(ctx, r.Retired+"/ca.key"); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("retired key mode %v, want 0600", fi.Mode().Perm())
	}
	// abort of an aborted rotation: unchanged; finish of one: refused.
	if _, err := start(); err != nil {
		t.Fatal(err)
	}
	if _, err := abort(); err != nil {
		t.Fatal(err)
	}
	again("abort", abort)
	refused("finish after abort", finish, "was aborted")
}

func TestRotationFilesAreSecret(t *testing.T) {
	s, root := newStore(t)
	mustInit(t, s, autoSet.WantedNames(), time.Now())
	if _, err := StartRotation(context.Background(), s, autoSet, DefaultOverlap, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RotationFile, NextCertFile, NextKeyFile, NextCrossFile, CurrentCrossFile} {
		fi, err := s.Stat(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Join(root, name), fi.Mode().Perm())
		}
	}
}

func TestRotationRefusals(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	now := time.Now()
	mustInit(t, s, autoSet.WantedNames(), now)
	for _, tc := range []struct {
		desc string
		run  func() error
		kind fault.Kind
		msg  string
	}{
		{"mode provided", func() error {
			_, err := StartRotation(ctx, s, Settings{Mode: ModeProvided}, DefaultOverlap, now)
			return err
		}, fault.Invalid, "MANAGEMENT_TLS_MODE is provided"},
		{"mode off", func() error { _, err := RotationStatus(ctx, s, Settings{Mode: ModeOff}); return err }, fault.Invalid, "nothing to rotate"},
		{"zero overlap", func() error { _, err := StartRotation(ctx, s, autoSet, 0, now); return err }, fault.Invalid, "not positive"},
		{"overlap past the CA's end", func() error {
			_, err := StartRotation(ctx, s, autoSet, 11*365*24*time.Hour, now)
			return err
		}, fault.Invalid, "after the current management CA expires"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := statetest.Snapshot(t, root)
			statetest.WantFault(t, tc.run(), tc.kind, tc.msg)
			statetest.AssertSame(t, before, statetest.Snapshot(t, root))
		})
	}
}

func TestParseOverlap(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true}, {"720h", 720 * time.Hour, true}, {" 1d ", 24 * time.Hour, true},
		{"0", 0, false}, {"0d", 0, false}, {"-5d", 0, false}, {"-1h", 0, false}, {"soon", 0, false}, {"", 0, false},
		{"1.5d", 0, false}, {"99999999999d", 0, false},
	} {
		got, err := ParseOverlap(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseOverlap(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil {
			statetest.WantFault(t, err, fault.Invalid, "--overlap")
		}
	}
}

// A CA from before rotation (MaxPathLen 0) cannot vouch for the next CA:
// switch says so and needs the confirmation; with it, an old-only client
// fails from switch on, as the refusal warned.
func TestSwitchWithALegacyCA(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	now := time.Now()
	legacy := mustCA(t, caCommonName, now)
	srv := mustServer(t, legacy, now, ServerValidity, "mgmt.example.com")
	for _, f := range []struct {
		name string
		b    []byte
	}{{CACertFile, legacy.CertPEM}, {CAKeyFile, legacy.KeyPEM}, {ServerCertFile, srv.CertPEM}, {ServerKeyFile, srv.KeyPEM}} {
		if err := s.Write(ctx, f.name, f.b, state.SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := StartRotation(ctx, s, autoSet, DefaultOverlap, now); err != nil {
		t.Fatal(err)
	}
	next := mustCert(t, s, NextCertFile)
	// started works for everyone: the next CA allows the cross-certificate.
	for _, roots := range [][]*x509.Certificate{{legacy.Cert}, {next}, {legacy.Cert, next}} {
		if err := verifies(t, s, roots...); err != nil {
			t.Errorf("started with a legacy CA: %v", err)
		}
	}
	before := statetest.Snapshot(t, root)
	_, err := SwitchRotation(ctx, s, autoSet, false, now)
	statetest.WantFault(t, err, fault.Invalid, "allows no intermediate certificate")
	statetest.WantHint(t, err, "--"+FlagAgentsUpdated)
	statetest.AssertSame(t, before, statetest.Snapshot(t, root))
	info, err := RotationStatus(ctx, s, autoSet)
	if err != nil || info.Current.CrossVerifiable {
		t.Fatalf("status: %+v, %v; want the current CA not cross-verifiable", info, err)
	}
	if _, err := SwitchRotation(ctx, s, autoSet, true, now); err != nil {
		t.Fatal(err)
	}
	if err := CheckServedChain(ctx, s, now); err == nil || !strings.Contains(err.Error(), pki.Fingerprint(legacy.Cert)) {
		t.Errorf("CheckServedChain after a confirmed switch from a legacy CA: %v; want the old CA named", err)
	}
	if err := verifies(t, s, legacy.Cert); err == nil || !strings.Contains(err.Error(), "intermediates") {
		t.Errorf("switched with a legacy CA: old-only client: %v; want the path length refusal", err)
	}
	if err := verifies(t, s, next); err != nil {
		t.Errorf("switched with a legacy CA: next-only client: %v", err)
	}
}

// ca renew-server and serve's Ensure issue from the CA the stage names,
// with its cross-certificate; AgentCA hands out current then next.
func TestIssuanceFollowsTheStage(t *testing.T) {
	ctx := context.Background()
	for name, open := range rotStores(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			now := time.Now()
			names := autoSet.WantedNames()
			mustInit(t, s, names, now)
			old := mustCert(t, s, CACertFile)
			if _, err := StartRotation(ctx, s, autoSet, DefaultOverlap, now); err != nil {
				t.Fatal(err)
			}
			next := mustCert(t, s, NextCertFile)
			check := func(stage string, from *x509.Certificate, cross string) {
				t.Helper()
				leaf, inter := served(t, s)
				if leaf.CheckSignatureFrom(from) != nil || len(inter) != 1 || !inter[0].Equal(mustCert(t, s, cross)) {
					t.Errorf("%s: leaf or chain not from the stage's CA", stage)
				}
			}
			if _, err := RenewServer(ctx, s, names, now); err != nil {
				t.Fatal(err)
			}
			check("renew-server while started", old, CurrentCrossFile)
			// Ensure with other names re-issues; with the same, nothing.
			more := pki.ParseNames(append(strings.Split("mgmt.example.com,localhost,127.0.0.1,::1,extra.example.com", ","), sortedNames(names)...))
			if _, did, err := Ensure(ctx, s, more, now); err != nil || did == "" {
				t.Fatalf("Ensure with new names: %q, %v", did, err)
			}
			check("Ensure while started", old, CurrentCrossFile)
			if _, err := SwitchRotation(ctx, s, autoSet, false, now); err != nil {
				t.Fatal(err)
			}
			if _, err := RenewServer(ctx, s, names, now); err != nil {
				t.Fatal(err)
			}
			check("renew-server while switched", next, NextCrossFile)
			if _, did, err := Ensure(ctx, s, names, now); err != nil || did != "" {
				t.Errorf("Ensure while switched: %q, %v; want nothing to do", did, err)
			}
			b, err := AgentCA(ctx, s, autoSet)
			if err != nil {
				t.Fatal(err)
			}
			certs, err := pki.ParseCertChain(b)
			if err != nil || len(certs) != 2 || !certs[0].Equal(old) || !certs[1].Equal(next) {
				t.Errorf("AgentCA during a rotation: %d certificates (%v); want current then next", len(certs), err)
			}
			if _, err := Replace(ctx, s, names, now); err == nil {
				t.Error("ca init --replace during a rotation: accepted")
			}
		})
	}
}
