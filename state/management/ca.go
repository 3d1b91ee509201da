package management

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// Files of auto mode. The CA exists exactly when CACertFile exists; it is
// written in one change with its key and the server certificate.
const (
	Dir            = "certs/management"
	CACertFile     = Dir + "/ca.crt"
	CAKeyFile      = Dir + "/ca.key"
	ServerCertFile = Dir + "/server.crt"
	ServerKeyFile  = Dir + "/server.key"
)

// caCommonName is the CA's subject.
const caCommonName = "p2ptls management CA"

// ServerValidity is the auto server certificate's lifetime; it is re-issued
// when a third of it remains.
const ServerValidity = pki.ServerMaxValidity

// Init creates the CA and the server certificate, in one change. It
// refuses to replace an existing CA, and to create one where the record
// says a CA existed (see CARecordFile): Replace does that, deliberately.
func Init(ctx context.Context, s state.Store, names pki.Names, now time.Time) error {
	return state.Update(ctx, s, "ca init", func(tx *state.Tx) error {
		if _, err := tx.Read(ctx, CACertFile); err == nil {
			return fault.Failf("'p2ptls ca show' shows it; 'p2ptls ca renew-server' re-issues the server certificate from it; 'p2ptls ca init --replace --confirm-new-ca' replaces it, and then every agent needs the new one",
				"a management CA already exists and is never replaced silently, because every agent trusts it")
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", CACertFile, err)
		}
		if err := refuseIfRecorded(ctx, tx); err != nil {
			return err
		}
		_, _, err := createCA(ctx, tx, names, now)
		return err
	})
}

// refuseIfRecorded refuses to create a CA in a state whose record names
// one that existed.
func refuseIfRecorded(ctx context.Context, s state.Store) error {
	rec, err := ReadCARecord(ctx, s)
	if err != nil {
		return err
	}
	if rec != nil {
		return refuseNewCA(s, rec)
	}
	return nil
}

// Retired holds the CAs that Replace put aside, one directory each.
const Retired = Dir + "/retired"

// Replaced is what Replace did.
type Replaced struct {
	// Old is the fingerprint of the CA replaced, "" when there was none
	// (only its record); Kept is where its files went.
	Old, Kept string
	// New is the new CA's fingerprint.
	New string
}

// Replace creates a new CA and server certificate, deliberately: the
// operator accepts that every agent needs the new CA. An existing CA,
// with its key and server certificate, is kept aside in
// certs/management/retired/<UTC time>/ (so that a mistaken replace can be
// undone by moving it back), and the record names the new one. One
// change: a crash leaves the old CA or the new one.
func Replace(ctx context.Context, s state.Store, names pki.Names, now time.Time) (*Replaced, error) {
	var r Replaced
	err := state.Update(ctx, s, "ca init --replace", func(tx *state.Tx) error {
		r = Replaced{}
		// A rotation replaces the CA without breaking agents; a replace
		// in its middle would leave its next CA and chain behind.
		if rot, err := ReadRotation(ctx, tx); err != nil {
			return err
		} else if rot != nil {
			return fault.Invalidf("finish it ('p2ptls ca rotate finish') or abort it ('p2ptls ca rotate abort') first",
				"a management CA rotation is open (stage %s)", rot.Stage)
		}
		if b, err := tx.Read(ctx, CACertFile); err == nil {
			if certs, err := pki.ParseCertChain(b); err == nil {
				r.Old = pki.Fingerprint(certs[0])
			}
			if r.Kept, err = retire(ctx, tx, now); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", CACertFile, err)
		}
		ca, _, err := createCA(ctx, tx, names, now)
		if err != nil {
			return err
		}
		r.New = pki.Fingerprint(ca.Cert)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// retire moves the files of the current CA into a new directory under
// Retired and returns its store name.
func retire(ctx context.Context, tx *state.Tx, now time.Time) (string, error) {
	dir, err := retiredDir(ctx, tx, now)
	if err != nil {
		return "", err
	}
	// All 0600: nothing reads a retired certificate but a person, and the
	// state's rules (doctor, backup) know only the live ones for public.
	for _, name := range []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile} {
		b, err := tx.Read(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		if err := tx.Write(ctx, dir+"/"+path.Base(name), b, state.SecretMode); err != nil {
			return "", err
		}
		if err := tx.Delete(ctx, name); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// retiredDir is a new directory name under Retired for now.
func retiredDir(ctx context.Context, tx *state.Tx, now time.Time) (string, error) {
	base := Retired + "/" + now.UTC().Format("20060102T150405Z")
	dir := base
	for i := 2; ; i++ {
		if _, err := tx.Stat(ctx, dir); errors.Is(err, fs.ErrNotExist) {
			return dir, nil
		} else if err != nil {
			return "", err
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

// createCA writes a new CA and a server certificate from it, and records
// the CA (see CARecordFile).
func createCA(ctx context.Context, s state.Store, names pki.Names, now time.Time) (ca, srv *pki.KeyPair, err error) {
	ca, err = newCA(now)
	if err != nil {
		return nil, nil, fmt.Errorf("generate management CA: %w", err)
	}
	if err := writePair(ctx, s, CAKeyFile, CACertFile, ca); err != nil {
		return nil, nil, err
	}
	if err := writeCARecord(ctx, s, ca.Cert, RecordByCreate, now); err != nil {
		return nil, nil, err
	}
	srv, err = issueServer(ctx, s, &issuer{ca: ca}, names, now)
	return ca, srv, err
}

// writePair writes a key and its certificate.
func writePair(ctx context.Context, s state.Store, keyFile, certFile string, kp *pki.KeyPair) error {
	if err := s.Write(ctx, keyFile, kp.KeyPEM, state.SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", keyFile, err)
	}
	if err := s.Write(ctx, certFile, kp.CertPEM, state.PublicMode); err != nil {
		return fmt.Errorf("save %s: %w", certFile, err)
	}
	return nil
}

// issueServer issues a server certificate from iss and writes it with
// iss's chain.
func issueServer(ctx context.Context, s state.Store, iss *issuer, names pki.Names, now time.Time) (*pki.KeyPair, error) {
	ca := iss.ca
	// A CA at its end cannot vouch for a server certificate any more; only
	// the operator can decide to hand every agent a new one.
	if ca.Cert.NotAfter.Sub(now) < 24*time.Hour {
		return nil, fault.Failf("create a new CA deliberately: move certs/management aside, run 'p2ptls ca init', then give every agent the new CA ('p2ptls agent env')",
			"the management CA expires on %s and cannot issue a server certificate any more", text.Stamp(ca.Cert.NotAfter))
	}
	validity := min(ServerValidity, ca.Cert.NotAfter.Sub(now))
	srv, err := pki.IssueServer(ca, names, now, validity)
	if err != nil {
		return nil, fmt.Errorf("issue management server certificate: %w", err)
	}
	return writeServer(ctx, s, srv, iss)
}

// writeServer writes srv's leaf followed by iss's chain, and its key.
func writeServer(ctx context.Context, s state.Store, srv *pki.KeyPair, iss *issuer) (*pki.KeyPair, error) {
	out := *srv
	out.CertPEM = pki.EncodeCert(srv.Cert.Raw)
	for _, c := range iss.chain {
		out.CertPEM = append(out.CertPEM, pki.EncodeCert(c.Raw)...)
	}
	if err := writePair(ctx, s, ServerKeyFile, ServerCertFile, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// loadCA reads the CA and its key; a CA without its key is a broken state
// that only a backup can mend.
func loadCA(ctx context.Context, s state.Store) (*pki.KeyPair, error) {
	certPEM, err := s.Read(ctx, CACertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fault.Failf("create it with 'p2ptls ca init' (or let 'p2ptls serve' create it)", "there is no management CA yet")
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", CACertFile, err)
	}
	keyPEM, err := s.Read(ctx, CAKeyFile)
	if err != nil {
		return nil, fault.Failf("restore certs/management from a backup; a new CA would break every agent's trust",
			"the management CA key %s cannot be read: %v", CAKeyFile, err)
	}
	ca, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fault.Failf("restore certs/management from a backup", "the management CA in %s is damaged: %v", Dir, err)
	}
	return ca, nil
}

// Ensure makes auto mode ready to serve: it creates the CA when there is
// none, and re-issues the server certificate from the same CA when it is
// missing, damaged, not from this CA, does not carry exactly the wanted
// names, or nears expiry. It returns the server key pair and what it did;
// when there is nothing to do, nothing is written.
func Ensure(ctx context.Context, s state.Store, names pki.Names, now time.Time) (srv *pki.KeyPair, did string, err error) {
	// Nothing to do is what every start finds: told without the lock, and
	// without loading the desired state (2 s at 100k mappings), which a
	// change under state.Update must.
	if iss, err := loadIssuer(ctx, s); err == nil {
		if srv, why := currentServer(ctx, s, iss, names, now); why == "" && recorded(ctx, s) {
			return srv, "", nil
		}
	}
	err = state.Update(ctx, s, "serve: management certificates", func(tx *state.Tx) error {
		if _, err := tx.Read(ctx, CACertFile); errors.Is(err, fs.ErrNotExist) {
			// A new CA only where none existed: one lost (a restore of
			// the wrong archive) is the operator's to restore or replace.
			if err := refuseIfRecorded(ctx, tx); err != nil {
				return err
			}
			_, srv, err = createCA(ctx, tx, names, now)
			did = "created the management CA and server certificate"
			return err
		}
		ca, err := loadCA(ctx, tx)
		if err != nil {
			return err
		}
		iss, err := loadIssuer(ctx, tx)
		if err != nil {
			return err
		}
		wrote := false
		if !recorded(ctx, tx) {
			// A CA from before the record existed: recorded once.
			if err := writeCARecord(ctx, tx, ca.Cert, RecordByServe, now); err != nil {
				return err
			}
			wrote = true
		}
		var why string
		if srv, why, err = placeServer(ctx, tx, iss, names, now); err != nil || why != "" {
			did = "re-issued the management server certificate: " + why
			if why == whyChain {
				did = "kept the management server certificate, with the chain the CA rotation's stage serves"
			}
			return err
		}
		if wrote {
			return nil
		}
		return errUnchanged
	})
	if errors.Is(err, errUnchanged) {
		return srv, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return srv, did, nil
}

// recorded reports whether the record is there (a damaged one counts:
// it is doctor's to report, not serve's to overwrite).
func recorded(ctx context.Context, s state.Reader) bool {
	_, err := s.Read(ctx, CARecordFile)
	return err == nil
}

// errUnchanged ends a change that has nothing to do, so that nothing is
// written.
var errUnchanged = errors.New("nothing to change")

// currentServer loads the server certificate and says why it must be
// re-issued ("" when it is fine; whyChain when only the certificates
// after its leaf do not fit the rotation's stage).
func currentServer(ctx context.Context, s state.Store, iss *issuer, names pki.Names, now time.Time) (*pki.KeyPair, string) {
	certPEM, err := s.Read(ctx, ServerCertFile)
	if err != nil {
		return nil, "it is missing"
	}
	keyPEM, err := s.Read(ctx, ServerKeyFile)
	if err != nil {
		return nil, "its key is missing"
	}
	srv, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "it is damaged (" + err.Error() + ")"
	}
	if err := srv.Cert.CheckSignatureFrom(iss.ca.Cert); err != nil || !bytes.Equal(srv.Cert.RawIssuer, iss.ca.Cert.RawSubject) {
		return nil, "it was not issued by the " + iss.role + " CA"
	}
	if !names.Equal(srv.Cert) {
		return nil, "the wanted names changed"
	}
	if pki.NeedsRenewal(srv.Cert, now) {
		return nil, "it nears expiry"
	}
	if chain, err := pki.ParseCertChain(certPEM); err != nil || !sameChain(chain[1:], iss.chain) {
		return srv, whyChain
	}
	return srv, ""
}

// whyChain is currentServer's answer for a leaf that is fine in a chain
// that does not fit the rotation's stage: the leaf is kept, the chain
// rewritten.
const whyChain = "its chain does not fit the management CA rotation's stage"

// placeServer makes the server certificate fit iss: kept when it does,
// its chain rewritten when only that differs, else issued anew. why says
// what changed, "" for nothing.
func placeServer(ctx context.Context, s state.Store, iss *issuer, names pki.Names, now time.Time) (srv *pki.KeyPair, why string, err error) {
	srv, why = currentServer(ctx, s, iss, names, now)
	switch why {
	case "":
		return srv, "", nil
	case whyChain:
		srv, err = writeServer(ctx, s, srv, iss)
	default:
		srv, err = issueServer(ctx, s, iss, names, now)
	}
	return srv, why, err
}

// sameChain reports whether two lists hold the same certificates in order.
func sameChain(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}

// RenewServer re-issues the server certificate from the existing CA.
func RenewServer(ctx context.Context, s state.Store, names pki.Names, now time.Time) (srv *pki.KeyPair, err error) {
	err = state.Update(ctx, s, "ca renew-server", func(tx *state.Tx) error {
		iss, err := loadIssuer(ctx, tx)
		if err != nil {
			return err
		}
		srv, err = issueServer(ctx, tx, iss, names, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// CACertificate returns the CA certificate PEM and parsed, for export.
func CACertificate(ctx context.Context, s state.Store) ([]byte, *x509.Certificate, error) {
	b, err := s.Read(ctx, CACertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fault.Failf("create it with 'p2ptls ca init' (or let 'p2ptls serve' create it)", "there is no management CA yet")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", CACertFile, err)
	}
	certs, err := pki.ParseCertChain(b)
	if err != nil {
		return nil, nil, fault.Failf("restore certs/management from a backup", "%s is damaged: %v", CACertFile, err)
	}
	return pki.EncodeCert(certs[0].Raw), certs[0], nil
}
