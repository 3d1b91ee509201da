package agent_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// rotation is a management CA rotation as the management server serves
// it at each stage: the current CA, the next one, a cross-certificate of
// the next signed by the current, and servers for before the switch (leaf
// from the current CA), after it (leaf from the next CA with the
// cross-certificate in its chain) and after the finish (the next CA
// alone). During the rotation /ca.crt is the bundle, current CA first.
type rotation struct {
	cur, next                   *pki.KeyPair
	bundle                      []byte
	started, switched, finished string // URLs
}

// crossingCA is a management CA that may sign one CA below it: the
// cross-certificate. (pki.NewCA's path length 0 forbids that, and Go and
// OpenSSL clients enforce it.)
func crossingCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "p2ptls management CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(pki.CAValidity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.KeyPair{CertPEM: pki.EncodeCert(der), Cert: cert, Key: key}
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	r := &rotation{cur: crossingCA(t), next: newCA(t, "p2ptls management CA")}
	r.bundle = append(bytes.Clone(r.cur.CertPEM), r.next.CertPEM...)
	tmpl := *r.next.Cert
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, r.cur.Cert, r.next.Cert.PublicKey, r.cur.Key)
	if err != nil {
		t.Fatal(err)
	}
	cross := pki.EncodeCert(der)
	now := time.Now()
	old, fresh := issue(t, r.cur, now, "127.0.0.1"), issue(t, r.next, now, "127.0.0.1")
	r.started = serveTLS(t, old.CertPEM, old.KeyPEM, management("", http.StatusOK, r.bundle)).URL
	r.switched = serveTLS(t, append(bytes.Clone(fresh.CertPEM), cross...), fresh.KeyPEM, management("", http.StatusOK, r.bundle)).URL
	r.finished = serveTLS(t, fresh.CertPEM, fresh.KeyPEM, management("", http.StatusOK, r.next.CertPEM)).URL
	return r
}

// TestCheckDuringARotation: an agent learns from /ca.crt whether its CA
// survives the finish, and what to run when it does not; after the finish
// an agent with only the old CA fails with a hint naming the new one.
func TestCheckDuringARotation(t *testing.T) {
	r := newRotation(t)
	curFP, nextFP := pki.Fingerprint(r.cur.Cert), pki.Fingerprint(r.next.Cert)
	oldOnly := agent.Trust{CAs: []*x509.Certificate{r.cur.Cert}}
	oldFile := agent.Trust{CAs: []*x509.Certificate{r.cur.Cert}, File: "/etc/p2pstream/ca.pem"}
	newOnly := agent.Trust{CAs: []*x509.Certificate{r.next.Cert}}
	both := agent.Trust{CAs: []*x509.Certificate{r.cur.Cert, r.next.Cert}}

	for _, tc := range []struct {
		desc      string
		url       string
		trust     agent.Trust
		survives  bool
		msg, hint []string
	}{
		{"old CA before the switch", r.started, oldOnly, false,
			[]string{"rotating its CA from " + curFP + " to " + nextFP, "trusts only " + curFP, "stops verifying management at 'p2ptls ca rotate finish'"},
			[]string{"MANAGEMENT_CA_PEM_BASE64", "'p2ptls agent env'", "p2ptls ca export --format base64", "p2ptls agent bootstrap --url " + r.started + " --fingerprint " + nextFP}},
		{"old CA file before the switch", r.started, oldFile, false, []string{"stops verifying"},
			[]string{"replace /etc/p2pstream/ca.pem with the bundle", "p2ptls agent bootstrap --url " + r.started + " --fingerprint " + nextFP + " --out /etc/p2pstream/ca.pem", "p2ptls ca export"}},
		{"bundle before the switch", r.started, both, true, []string{"holds the next one", "keeps working after 'p2ptls ca rotate finish'"}, nil},
		{"old CA after the switch, through the cross-certificate", r.switched, oldOnly, false, []string{"stops verifying"}, []string{"--fingerprint " + nextFP}},
		{"new CA after the switch", r.switched, newOnly, true, []string{"keeps working"}, nil},
		{"bundle after the switch", r.switched, both, true, []string{"keeps working"}, nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			res, err := agent.Check(context.Background(), tc.url, tc.trust)
			if err != nil {
				t.Fatalf("Check: %v (hint: %s)", err, fault.HintOf(err))
			}
			rot := res.Rotation
			if rot == nil {
				t.Fatal("Check told nothing of the rotation")
			}
			if rot.CurrentCA != curFP || rot.NextCA != nextFP || rot.SurvivesFinish != tc.survives {
				t.Errorf("rotation = %+v, want current %s, next %s, survives %v", rot, curFP, nextFP, tc.survives)
			}
			for _, s := range tc.msg {
				if !strings.Contains(rot.Message, s) {
					t.Errorf("message %q lacks %q", rot.Message, s)
				}
			}
			for _, s := range tc.hint {
				if !strings.Contains(rot.Hint, s) {
					t.Errorf("hint %q lacks %q", rot.Hint, s)
				}
			}
			if tc.survives && rot.Hint != "" {
				t.Errorf("a surviving agent got a hint: %q", rot.Hint)
			}
		})
	}

	t.Run("after the finish", func(t *testing.T) {
		for _, trust := range []agent.Trust{newOnly, both} {
			res, err := agent.Check(context.Background(), r.finished, trust)
			if err != nil {
				t.Fatalf("Check with %d CAs: %v", len(trust.CAs), err)
			}
			if res.Rotation != nil || res.CAFingerprint != nextFP {
				t.Errorf("Check = %+v, rotation %+v", res, res.Rotation)
			}
		}
		_, err := agent.Check(context.Background(), r.finished, oldOnly)
		wantFault(t, err, fault.Failure, []string{"the given CA " + curFP + " did not issue", "whose CA is " + nextFP},
			[]string{"--fingerprint " + nextFP})
		if strings.Contains(fault.HintOf(err), "MANAGEMENT_TLS_EXTRA_HOSTS") {
			t.Errorf("hint suggests extra hosts: %s", fault.HintOf(err))
		}
	})

}

// TestBootstrapDuringARotation: either CA's fingerprint is accepted once
// the connection verifies with it, and the whole bundle is kept, so that
// the agent survives the finish; the next CA pinned before the switch
// cannot prove the server is management's yet, and is refused.
func TestBootstrapDuringARotation(t *testing.T) {
	r := newRotation(t)
	curFP, nextFP := pki.Fingerprint(r.cur.Cert), pki.Fingerprint(r.next.Cert)
	for _, tc := range []struct{ desc, url, fp string }{
		{"current CA before the switch", r.started, curFP},
		{"current CA after the switch", r.switched, curFP},
		{"next CA after the switch", r.switched, nextFP},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			caPEM, got, err := agent.Bootstrap(context.Background(), tc.url, tc.fp)
			if err != nil {
				t.Fatalf("Bootstrap: %v (hint: %s)", err, fault.HintOf(err))
			}
			if got != tc.fp || !bytes.Equal(caPEM, r.bundle) {
				t.Fatalf("Bootstrap = %s and %q, want %s and the bundle", got, caPEM, tc.fp)
			}
			file := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(file, caPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			_, cas, err := agent.LoadCA(file, "")
			if err != nil || len(cas) != 2 {
				t.Fatalf("LoadCA: %d CAs, %v", len(cas), err)
			}
			res, err := agent.Check(context.Background(), tc.url, agent.Trust{CAs: cas})
			if err != nil || res.Rotation == nil || !res.Rotation.SurvivesFinish {
				t.Fatalf("Check with the bootstrapped bundle: %+v, %v", res, err)
			}
			if _, err := agent.Check(context.Background(), r.finished, agent.Trust{CAs: cas}); err != nil {
				t.Fatalf("Check after the finish: %v", err)
			}
		})
	}

	caPEM, got, err := agent.Bootstrap(context.Background(), r.started, nextFP)
	if caPEM != nil || got != "" {
		t.Error("Bootstrap returned a CA along with its error")
	}
	wantFault(t, err, fault.Failure, []string{"still issued by the CA " + curFP + ", not by the pinned " + nextFP, "has not switched"},
		[]string{"names " + curFP + " as the current CA, pin that one instead", "p2ptls ca rotate switch"})

	// A machine in the middle serving the real current CA next to its own,
	// with a certificate from its own: the pin of the current CA does not
	// vouch for the other one.
	evil := newCA(t, "p2ptls management CA")
	evilLeaf := issue(t, evil, time.Now(), "127.0.0.1")
	mitm := serveTLS(t, evilLeaf.CertPEM, evilLeaf.KeyPEM, management("", http.StatusOK, append(bytes.Clone(r.cur.CertPEM), evil.CertPEM...)))
	caPEM, _, err = agent.Bootstrap(context.Background(), mitm.URL, curFP)
	if caPEM != nil {
		t.Error("Bootstrap accepted a bundle from a machine in the middle")
	}
	wantFault(t, err, fault.Failure, []string{"does not chain to the CA it serves"}, []string{"do not trust this server"})
}
