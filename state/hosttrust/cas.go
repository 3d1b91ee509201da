package hosttrust

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// CAs are this state's management CAs.
type CAs struct {
	// Current is what agents trust now: the CA, or during a rotation the
	// bundle (management.AgentCA).
	Current []*x509.Certificate
	// Retired are the CAs this state put aside under
	// certs/management/retired/ (replaced, rotated out, or a rotation's
	// next CA after an abort), none of them in Current.
	Retired []*x509.Certificate
}

// ForInstall returns the CAs to install: only auto mode has a management
// CA; the other modes are told what to trust instead.
func ForInstall(ctx context.Context, s state.Store, set management.Settings) (*CAs, error) {
	switch set.Mode {
	case management.ModeAuto, "":
		set.Mode = management.ModeAuto
	case management.ModeProvided:
		return nil, fault.Invalidf("trust the CA that issued MANAGEMENT_TLS_CERT_FILE instead: a public CA is trusted already, your own CA with your own tooling",
			"management TLS is in mode provided, which serves your certificate, so there is no management CA to install")
	case management.ModeOff:
		return nil, fault.Invalidf("nothing needs trusting for plain HTTP; with MANAGEMENT_TLS_MODE=auto management serves TLS from a CA this command installs",
			"management TLS is off (mode off), so there is no management CA to install")
	default:
		return nil, fault.Invalidf("use auto, provided or off", "unknown MANAGEMENT_TLS_MODE %q", set.Mode)
	}
	pemBytes, err := management.AgentCA(ctx, s, set)
	if err != nil {
		return nil, err
	}
	current, err := pki.ParseCertChain(pemBytes)
	if err != nil {
		return nil, fault.Failf("restore certs/management from a backup", "the management CA is damaged: %v", err)
	}
	return withRetired(ctx, s, current)
}

// ForUninstall returns the CAs whose entries to remove, in any mode: a
// state that moved from auto to provided still takes out what it
// installed. A state without a CA has only its retired ones; one with
// none at all (a wrong --config-dir) is refused rather than reported as
// a success that removed nothing.
func ForUninstall(ctx context.Context, s state.Store) (*CAs, error) {
	var current []*x509.Certificate
	if _, err := s.Stat(ctx, management.CACertFile); err == nil {
		pemBytes, err := management.AgentCA(ctx, s, management.Settings{Mode: management.ModeAuto})
		if err != nil {
			return nil, err
		}
		if current, err = pki.ParseCertChain(pemBytes); err != nil {
			return nil, fault.Failf("restore certs/management from a backup", "the management CA is damaged: %v", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", management.CACertFile, err)
	}
	cas, err := withRetired(ctx, s, current)
	if err == nil && len(cas.Current)+len(cas.Retired) == 0 {
		return nil, fault.NotFoundf("point --config-dir (CONFIG_DIR) at the state that installed the CA; entries of a lost state are listed by 'certutil -L -d sql:DIR' as 'p2ptls management CA <hex>' and removed with 'certutil -D'",
			"%s holds no management CA, current or retired, so no trust store entry can be told to be this state's", state.Locate(s, management.Dir))
	}
	return cas, err
}

// withRetired adds the CAs kept in certs/management/retired/<dir>/ca.crt.
// One that cannot be read as a certificate is a record for people and is
// skipped: it names no fingerprint to remove.
func withRetired(ctx context.Context, s state.Store, current []*x509.Certificate) (*CAs, error) {
	cas := &CAs{Current: current}
	seen := map[string]bool{}
	for _, c := range current {
		seen[hexFingerprint(c)] = true
	}
	dirs, err := s.List(ctx, management.Retired)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", management.Retired, err)
	}
	for _, d := range dirs {
		name := management.Retired + "/" + d + "/ca.crt"
		b, err := s.Read(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		certs, err := pki.ParseCertChain(b)
		if err != nil {
			continue
		}
		for _, c := range certs {
			if fp := hexFingerprint(c); !seen[fp] {
				seen[fp] = true
				cas.Retired = append(cas.Retired, c)
			}
		}
	}
	return cas, nil
}
