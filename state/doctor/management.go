package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// refusesToStart ends the message of a setting serve cannot start with.
const refusesToStart = "; serve refuses to start with it (exit 2)"

// refusesToStart1 ends the message of a state serve cannot start on.
const refusesToStart1 = "; serve refuses to start on it (exit 1)"

// hintOf is err's hint, or def.
func hintOf(err error, def string) string {
	if h := fault.HintOf(err); h != "" {
		return h
	}
	return def
}

// checkMode: MANAGEMENT_TLS_MODE is one serve starts with; off warns.
func checkMode(ctx context.Context, e *env) Check {
	if e.modeErr != nil {
		return fail(IDMode, hintOf(e.modeErr, "use MANAGEMENT_TLS_MODE=auto"), "%v%s", e.modeErr, refusesToStart)
	}
	switch e.set.Mode {
	case management.ModeOff:
		return warn(IDMode, "use MANAGEMENT_TLS_MODE=auto (the default) unless this is isolated development or a trusted local component terminates TLS in front of management",
			"MANAGEMENT_TLS_MODE=off with MANAGEMENT_ALLOW_INSECURE_HTTP=true: the management UI, API, admin tokens and agent traffic travel as plain HTTP")
	case management.ModeProvided:
		return ok(IDMode, "MANAGEMENT_TLS_MODE=provided: management serves %s and %s", e.set.CertFile, e.set.KeyFile)
	}
	return ok(IDMode, "MANAGEMENT_TLS_MODE=auto: p2ptls keeps the management CA and server certificate in %s", e.where(management.Dir))
}

// checkListen: MANAGEMENT_LISTEN is an address serve can bind.
func checkListen(ctx context.Context, e *env) Check {
	if e.listenErr != nil {
		return fail(IDListen, hintOf(e.listenErr, "give HOST:PORT, e.g. :8443"), "%v%s", e.listenErr, refusesToStart)
	}
	return ok(IDListen, "management listens on %s (MANAGEMENT_LISTEN)", e.set.Listen)
}

// checkProvidedFiles: mode provided's certificate and key exist, match and
// are valid now; one due for renewal warns.
func checkProvidedFiles(ctx context.Context, e *env) Check {
	if e.modeName() != management.ModeProvided {
		return ok(IDProvidedFiles, "nothing to check: MANAGEMENT_TLS_CERT_FILE and MANAGEMENT_TLS_KEY_FILE are used in mode provided only")
	}
	if e.set.CertFile == "" || e.set.KeyFile == "" {
		return warn(IDProvidedFiles, "set MANAGEMENT_TLS_CERT_FILE and MANAGEMENT_TLS_KEY_FILE", "not checked: the certificate or key file is not set (see %s)", IDMode)
	}
	if e.providedErr != nil {
		return fail(IDProvidedFiles, hintOf(e.providedErr, "give the certificate chain and the key that belongs to it"), "%v%s", e.providedErr, refusesToStart)
	}
	leaf := e.provided.Cert
	if pki.NeedsRenewal(leaf, e.in.Now) {
		return warn(IDProvidedFiles, "install a renewed certificate in place; serve picks replaced files up within a second",
			"the certificate in %s expires on %s, and less than a third of its lifetime is left", e.set.CertFile, text.Stamp(leaf.NotAfter))
	}
	return ok(IDProvidedFiles, "%s and %s match; the certificate covers %s and is valid until %s",
		e.set.CertFile, e.set.KeyFile, strings.Join(certNames(leaf), ", "), text.Stamp(leaf.NotAfter))
}

// checkPublicURL: MANAGEMENT_PUBLIC_URL is set, parses, is https while
// management TLS is on, and names a host remote agents can reach.
//
// Unset warns rather than fails: serve runs without it and agents on this
// machine can use localhost, but remote agents need it. Not https with TLS
// on fails: agents verify management over TLS only, so no agent can use it.
// A loopback or unresolvable host warns: doctor cannot see the agents'
// network, and split-horizon DNS may resolve it there.
func checkPublicURL(ctx context.Context, e *env) Check {
	raw := strings.TrimSpace(e.in.Settings.PublicURL)
	if raw == "" {
		return warn(IDPublicURL, "set MANAGEMENT_PUBLIC_URL to the https:// address agents reach management at, e.g. https://mgmt.example.com:8443, in serve's environment (and doctor's)",
			"MANAGEMENT_PUBLIC_URL is not set: agents need the URL they reach management at ('p2ptls agent env' prints it), and the server certificate then carries only localhost and this machine's names")
	}
	if e.urlErr != nil {
		return fail(IDPublicURL, hintOf(e.urlErr, "write it like https://mgmt.example.com:8443"), "%v%s", e.urlErr, refusesToStart)
	}
	u, _ := url.Parse(raw)
	tlsOn := e.set.Mode != management.ModeOff
	if tlsOn && u.Scheme != "https" {
		return fail(IDPublicURL, "write it as https://"+u.Host+" (agents verify management with MANAGEMENT_CA_FILE over TLS)",
			"MANAGEMENT_PUBLIC_URL %s is not https:// while management TLS is on (mode %s): agents connect over TLS only and cannot use it", raw, e.modeName())
	}
	host := e.publicHost
	unreachable := func(why string) Check {
		return warn(IDPublicURL, "set MANAGEMENT_PUBLIC_URL to a DNS name or address that remote agents reach, and put that name in DNS; check from an agent with 'p2ptls agent check'",
			"MANAGEMENT_PUBLIC_URL %s %s: agents on other machines cannot reach management there", raw, why)
	}
	if ip := net.ParseIP(host); ip != nil {
		switch {
		case ip.IsLoopback():
			return unreachable("names the loopback address " + host)
		case ip.IsUnspecified():
			return unreachable("names the unspecified address " + host + ", which no one can connect to")
		}
		return ok(IDPublicURL, "MANAGEMENT_PUBLIC_URL is %s", raw)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return unreachable("names " + host + ", which is this machine for everyone")
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := e.in.Resolve(rctx, host)
	if err != nil || len(ips) == 0 {
		if err == nil {
			err = fmt.Errorf("no addresses")
		}
		return warn(IDPublicURL, "add "+host+" to DNS (or check this machine's resolver); an agent that cannot resolve it cannot connect",
			"MANAGEMENT_PUBLIC_URL %s: %s does not resolve from here (%v)", raw, host, err)
	}
	addrs := make([]string, len(ips))
	loopback := true
	for i, ip := range ips {
		addrs[i] = ip.String()
		loopback = loopback && ip.IsLoopback()
	}
	if loopback {
		return unreachable("names " + host + ", which resolves only to loopback (" + strings.Join(addrs, ", ") + ")")
	}
	return ok(IDPublicURL, "MANAGEMENT_PUBLIC_URL is %s; %s resolves to %s", raw, host, names(addrs))
}

// checkPublicURLCovered: the certificate management serves covers the
// public URL's host, or agents refuse it.
func checkPublicURLCovered(ctx context.Context, e *env) Check {
	switch {
	case strings.TrimSpace(e.in.Settings.PublicURL) == "":
		return ok(IDPublicURLCovered, "nothing to check: MANAGEMENT_PUBLIC_URL is not set")
	case e.urlErr != nil:
		return warn(IDPublicURLCovered, "fix MANAGEMENT_PUBLIC_URL first", "not checked: MANAGEMENT_PUBLIC_URL does not parse (see %s)", IDPublicURL)
	case e.modeName() == management.ModeOff:
		return ok(IDPublicURLCovered, "nothing to check in mode off: management serves no certificate")
	}
	host := e.publicHost
	leaf, why := e.serverLeaf()
	if leaf == nil {
		if why != "" {
			return warn(IDPublicURLCovered, "fix the management certificate first", "not checked: %s", why)
		}
		return ok(IDPublicURLCovered, "there is no management server certificate yet: serve issues one that covers %s on its first start", host)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		hint := "run 'p2ptls ca renew-server' with this MANAGEMENT_PUBLIC_URL (restarting serve does the same); any other name agents use goes into MANAGEMENT_TLS_EXTRA_HOSTS"
		if e.modeName() == management.ModeProvided {
			hint = fmt.Sprintf("install a certificate that names %s in MANAGEMENT_TLS_CERT_FILE, or set MANAGEMENT_PUBLIC_URL to a name it covers", host)
		}
		return fail(IDPublicURLCovered, hint,
			"the management server certificate does not cover %s, the host of MANAGEMENT_PUBLIC_URL (it covers %s): agents refuse it", host, coverList(leaf))
	}
	return ok(IDPublicURLCovered, "the management server certificate covers %s", host)
}

// checkExtraHosts: every MANAGEMENT_TLS_EXTRA_HOSTS entry is valid and on
// the server certificate.
func checkExtraHosts(ctx context.Context, e *env) Check {
	if e.extraErr != nil {
		return fail(IDExtraHosts, hintOf(e.extraErr, "give comma-separated DNS names or IP addresses"), "%v%s", e.extraErr, refusesToStart)
	}
	extra := e.set.ExtraHosts
	if len(extra) == 0 {
		return ok(IDExtraHosts, "MANAGEMENT_TLS_EXTRA_HOSTS is not set: the server certificate carries the public URL's host, localhost, 127.0.0.1, ::1 and this machine's name")
	}
	if e.modeName() == management.ModeOff {
		return ok(IDExtraHosts, "nothing to check in mode off: management serves no certificate")
	}
	leaf, why := e.serverLeaf()
	if leaf == nil {
		if why != "" {
			return warn(IDExtraHosts, "fix the management certificate first", "not checked: %s", why)
		}
		return ok(IDExtraHosts, "there is no management server certificate yet: serve issues one with %s on its first start", names(extra))
	}
	var missing []string
	if e.modeName() == management.ModeProvided {
		for _, h := range extra {
			if leaf.VerifyHostname(h) != nil {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			return fail(IDExtraHosts, "install a certificate that names them in MANAGEMENT_TLS_CERT_FILE; MANAGEMENT_TLS_EXTRA_HOSTS shapes only the auto certificate",
				"the provided management certificate does not cover %s from MANAGEMENT_TLS_EXTRA_HOSTS (it covers %s)", names(missing), coverList(leaf))
		}
	} else if missing = pki.ParseNames(extra).Missing(leaf); len(missing) > 0 {
		return fail(IDExtraHosts, "run 'p2ptls ca renew-server' with the same MANAGEMENT_TLS_EXTRA_HOSTS (a running serve serves the new certificate within seconds; restarting serve does the same)",
			"the management server certificate lacks %s from MANAGEMENT_TLS_EXTRA_HOSTS (it carries %s): agents that connect by those names refuse it", names(missing), coverList(leaf))
	}
	return ok(IDExtraHosts, "the management server certificate carries every MANAGEMENT_TLS_EXTRA_HOSTS entry: %s", names(extra))
}

// caRotateWithin is how long before the CA's end doctor asks for a
// rotation: long enough that agents updated only now and then (a yearly
// image, a device in a drawer) get the next CA before the old one ends.
const caRotateWithin = 2 * 365 * 24 * time.Hour

// checkCA: the CA agents trust is there, with its key, and not near its end.
func checkCA(ctx context.Context, e *env) Check {
	switch e.modeName() {
	case management.ModeProvided:
		if e.provided == nil {
			return warn(IDCA, "fix the provided files first", "not checked: the provided certificate does not load (see %s)", IDProvidedFiles)
		}
		chain, _ := pki.ParseCertChain(e.provided.CertPEM)
		if len(chain) < 2 {
			return ok(IDCA, "the provided chain carries no CA certificate: agents verify management with the system roots or your own CA (MANAGEMENT_CA_FILE)")
		}
		ca := chain[len(chain)-1]
		return ok(IDCA, "agents trust %q (SHA-256 %s), the last certificate of %s", ca.Subject.CommonName, pki.Fingerprint(ca), e.set.CertFile)
	case management.ModeOff:
		if e.ca != nil {
			return ok(IDCA, "nothing to check in mode off; the auto CA %s stays in %s", pki.Fingerprint(e.ca), e.where(management.Dir))
		}
		return ok(IDCA, "nothing to check in mode off: management serves no certificate")
	}
	if e.caErr != nil {
		return fail(IDCA, "restore certs/management from a backup; a new CA would break every agent's trust",
			"the management CA %s is damaged: %v", e.where(management.CACertFile), e.caErr)
	}
	rec, recErr := management.ReadCARecord(ctx, e.s)
	if e.ca == nil {
		// The record outlives certs/management: a CA that existed is not
		// one serve may quietly make anew (it refuses to start).
		if recErr != nil {
			return fail(IDCA, hintOf(recErr, "restore it from a backup"), "there is no management CA, and %v%s", recErr, refusesToStart1)
		}
		if rec != nil {
			return fail(IDCA, fmt.Sprintf("restore certs/management from a backup that holds the CA %s ('p2ptls restore BACKUP --force'), or accept a new CA with 'p2ptls ca init --replace --confirm-new-ca' and give every agent the new one ('p2ptls agent env')", rec.FingerprintSHA256),
				"the management CA is missing from %s, but this state had the CA %s (recorded %s by %s): agents that trust CA %s will not trust the new one, and serve refuses to create one (exit 1)",
				e.where(management.Dir), rec.FingerprintSHA256, text.Stamp(rec.RecordedAt), rec.By, rec.FingerprintSHA256)
		}
		return warn(IDCA, "create it now with 'p2ptls ca init --public-url URL' (or start serve), then give agents 'p2ptls agent env'",
			"there is no management CA yet: serve creates one on its first start, and agents can only be given it after that")
	}
	keyPEM, err := e.s.Read(ctx, management.CAKeyFile)
	if err == nil {
		_, err = pki.LoadKeyPair(pki.EncodeCert(e.ca.Raw), keyPEM)
	}
	if err != nil {
		return fail(IDCA, "restore certs/management from a backup; a new CA would break every agent's trust",
			"the management CA key %s cannot be used (%v): the server certificate cannot be re-issued", e.where(management.CAKeyFile), err)
	}
	fp := pki.Fingerprint(e.ca)
	if rec != nil && rec.FingerprintSHA256 != fp {
		return warn(IDCA, "if agents were given "+rec.FingerprintSHA256+", restore certs/management from a backup that holds it; else record this CA by giving it out ('p2ptls agent env' or 'p2ptls ca export')",
			"the management CA %s is not the CA %s that this state recorded (%s by %s): agents given that one refuse management", fp, rec.FingerprintSHA256, text.Stamp(rec.RecordedAt), rec.By)
	}
	switch left := e.ca.NotAfter.Sub(e.in.Now); {
	case left <= 0:
		return fail(IDCA, "create a new CA deliberately: move certs/management aside, run 'p2ptls ca init', then give every agent the new CA ('p2ptls agent env')",
			"the management CA %s expired on %s: agents refuse management", fp, text.Stamp(e.ca.NotAfter))
	case left < caRotateWithin:
		return warn(IDCA, "rotate now: p2ptls ca rotate start (every agent keeps working through the rotation; 'p2ptls agent check' tells each what it needs)",
			"the management CA %s expires on %s, in less than two years", fp, text.Stamp(e.ca.NotAfter))
	}
	return ok(IDCA, "management CA SHA-256 %s, valid until %s", fp, text.Stamp(e.ca.NotAfter))
}

// checkServerCertificate: auto mode's server certificate loads, comes from
// the CA and is valid.
func checkServerCertificate(ctx context.Context, e *env) Check {
	switch e.modeName() {
	case management.ModeProvided:
		return ok(IDServerCertificate, "nothing to check in mode provided: see %s", IDProvidedFiles)
	case management.ModeOff:
		return ok(IDServerCertificate, "nothing to check in mode off: management serves no certificate")
	}
	renew := "run 'p2ptls ca renew-server' (serve also re-issues it when it starts)"
	if e.serverErr != nil {
		return fail(IDServerCertificate, renew, "the management server certificate %s is damaged: %v", e.where(management.ServerCertFile), e.serverErr)
	}
	if e.server == nil {
		return ok(IDServerCertificate, "there is no management server certificate yet: serve issues it on its first start")
	}
	leaf := e.server.Cert
	// During a rotation the stage names the issuer: the next CA once
	// switched.
	if iss, err := management.IssuingCA(ctx, e.s); e.ca != nil && err == nil && leaf.CheckSignatureFrom(iss) != nil {
		return fail(IDServerCertificate, renew, "the management server certificate was not issued by the management CA the rotation's stage names: agents that trust that CA refuse it")
	}
	switch {
	case !e.in.Now.Before(leaf.NotAfter):
		return fail(IDServerCertificate, renew, "the management server certificate expired on %s: agents refuse it", text.Stamp(leaf.NotAfter))
	case e.in.Now.Before(leaf.NotBefore):
		return fail(IDServerCertificate, "check this machine's clock, then "+renew, "the management server certificate is not valid before %s", text.Stamp(leaf.NotBefore))
	case pki.NeedsRenewal(leaf, e.in.Now):
		return warn(IDServerCertificate, renew+"; a running serve re-issues it within 12 hours",
			"the management server certificate expires on %s and is due for renewal", text.Stamp(leaf.NotAfter))
	}
	return ok(IDServerCertificate, "issued by the management CA, covers %s, valid until %s", coverList(leaf), text.Stamp(leaf.NotAfter))
}

// currentCA is the fingerprint of the auto CA, "" when there is none.
func (e *env) currentCA() string {
	if e.ca == nil {
		return ""
	}
	return pki.Fingerprint(e.ca)
}

// checkCABackup: the last backup holds the CA agents trust now. Restoring
// a state without it, or with another one, breaks every agent.
func checkCABackup(ctx context.Context, e *env) Check {
	if e.noDir() {
		return ok(IDCABackup, "there is no state directory yet: nothing to back up")
	}
	takeOne := "take one now: p2ptls backup --out /var/backups/p2ptls.tar.gz --passphrase-file F, and keep it off this machine"
	rec, err := backup.ReadRecord(ctx, e.s)
	if err != nil {
		return warn(IDCABackup, takeOne, "the record of the last backup cannot be read: %v", err)
	}
	cur := e.currentCA()
	if rec == nil {
		return warn(IDCABackup, takeOne,
			"no backup of this state directory was recorded: losing certs/management means a new management CA that no agent trusts")
	}
	which := "taken " + text.Stamp(rec.CreatedAt)
	if rec.File != "" {
		which += " to " + rec.File
	} else {
		which += " to standard output"
	}
	switch {
	case rec.CAFingerprintSHA256 == cur && cur != "":
		return ok(IDCABackup, "the last backup (%s) holds the current management CA %s", which, cur)
	case rec.CAFingerprintSHA256 == "" && cur == "":
		return ok(IDCABackup, "the last backup (%s) holds no management CA, and neither does this state", which)
	case cur == "" && e.caErr == nil:
		msg := fmt.Sprintf("this state has no management CA, but the last backup (%s) holds CA %s, which agents trust", which, rec.CAFingerprintSHA256)
		hint := "restore certs/management from that backup ('p2ptls restore FILE --force') before serve starts"
		if e.modeName() == management.ModeAuto {
			return fail(IDCABackup, hint, "%s: serve would create a new CA that no agent trusts", msg)
		}
		return warn(IDCABackup, hint, "%s", msg)
	case cur == "":
		return warn(IDCABackup, "fix the management CA first", "not checked: the management CA is damaged (see %s)", IDCA)
	case rec.CAFingerprintSHA256 == "":
		return warn(IDCABackup, "take a new backup now: p2ptls backup --out FILE",
			"the last backup (%s) holds no management CA: restoring it needs --allow-missing-management-ca, and agents that trust the current CA %s break", which, cur)
	}
	return warn(IDCABackup, "take a new backup now: p2ptls backup --out FILE",
		"the last backup (%s) holds management CA %s, not the current %s: agents that trust the current CA break when that backup is restored", which, rec.CAFingerprintSHA256, cur)
}

// checkNetwork (--network): connect to MANAGEMENT_PUBLIC_URL as an agent
// does, trusting only the CA agents are given.
func checkNetwork(ctx context.Context, e *env) Check {
	if !e.in.Network {
		return ok(IDNetwork, "not checked: give --network to connect to MANAGEMENT_PUBLIC_URL as an agent does")
	}
	raw := strings.TrimSpace(e.in.Settings.PublicURL)
	switch {
	case raw == "":
		return warn(IDNetwork, "set MANAGEMENT_PUBLIC_URL", "not checked: MANAGEMENT_PUBLIC_URL is not set, so there is nothing to connect to (see %s)", IDPublicURL)
	case e.urlErr != nil:
		return warn(IDNetwork, "fix MANAGEMENT_PUBLIC_URL first", "not checked: MANAGEMENT_PUBLIC_URL does not parse (see %s)", IDPublicURL)
	case e.in.Check == nil:
		return warn(IDNetwork, "run it from the p2ptls command line", "not checked: this build has no network check")
	}
	if u, _ := url.Parse(raw); u.Scheme != "https" {
		return warn(IDNetwork, "use an https:// URL", "not checked: agents verify management over https:// only, and MANAGEMENT_PUBLIC_URL is %s", raw)
	}
	trust, what, err := e.agentTrust(ctx)
	if err != nil {
		return warn(IDNetwork, hintOf(err, "fix the management CA first"), "not checked: no CA to verify management with: %v", err)
	}
	if err := e.in.Check(ctx, raw, trust); err != nil {
		return fail(IDNetwork, hintOf(err, "run 'p2ptls agent check' from an agent machine for details"), "%v", err)
	}
	return ok(IDNetwork, "connected to %s and verified it with %s; /healthz answered", raw, what)
}

// agentTrust is what agents verify management with in the current mode:
// what management publishes at /ca.crt ('ca export', 'agent env'; during a
// rotation, the bundle of both CAs), else the system roots.
func (e *env) agentTrust(ctx context.Context) (agent.Trust, string, error) {
	cas, err := e.published(ctx)
	switch {
	case err != nil:
		return agent.Trust{}, "", err
	case len(cas) > 0:
		return agent.Trust{CAs: cas}, "the published management CA " + fingerprints(cas), nil
	}
	return agent.Trust{System: true}, "the system roots", nil
}

// published is what management hands agents to trust (the CA, or during a
// rotation the bundle), nil when that is the system roots (mode provided
// with a leaf only).
func (e *env) published(ctx context.Context) ([]*x509.Certificate, error) {
	switch e.modeName() {
	case management.ModeProvided:
		// As management.AgentCA says, from the pair loaded at doctor's
		// clock.
		if e.provided == nil {
			return nil, fmt.Errorf("the provided certificate does not load (see %s)", IDProvidedFiles)
		}
		if chain, _ := pki.ParseCertChain(e.provided.CertPEM); len(chain) > 1 {
			return chain[len(chain)-1:], nil
		}
		return nil, nil
	case management.ModeAuto:
		if e.ca == nil {
			if e.caErr != nil {
				return nil, e.caErr
			}
			return nil, fmt.Errorf("there is no management CA yet")
		}
	}
	caPEM, err := management.AgentCA(ctx, e.s, e.set)
	if err != nil {
		return nil, err
	}
	return pki.ParseCertChain(caPEM)
}

// fingerprints names certificates by fingerprint, the only thing that
// tells one installation's management CA from another's.
func fingerprints(certs []*x509.Certificate) string {
	fps := make([]string, len(certs))
	for i, c := range certs {
		fps[i] = pki.Fingerprint(c)
	}
	return strings.Join(fps, " and ")
}

// checkChain: the chain management serves (auto: server.crt, with a
// rotation's cross-certificate after the switch; provided: the chain file)
// verifies with what management publishes for agents. Dates and names
// have their own checks; this is about who signed what, which a half-done
// rotation or a hand-copied file can get wrong for every agent at once.
func checkChain(ctx context.Context, e *env) Check {
	var (
		chain []*x509.Certificate
		from  string
	)
	switch e.modeName() {
	case management.ModeOff:
		return ok(IDChain, "nothing to check in mode off: management serves no certificate")
	case management.ModeProvided:
		if e.provided == nil {
			return warn(IDChain, "fix the provided files first", "not checked: the provided certificate does not load (see %s)", IDProvidedFiles)
		}
		chain, _ = pki.ParseCertChain(e.provided.CertPEM)
		from = e.set.CertFile
	default:
		if e.server == nil {
			if e.serverErr != nil {
				return warn(IDChain, "fix the management server certificate first", "not checked: the server certificate does not load (see %s)", IDServerCertificate)
			}
			return ok(IDChain, "there is no management server certificate yet: serve issues one from the management CA on its first start")
		}
		chain, _ = pki.ParseCertChain(e.server.CertPEM)
		from = e.where(management.ServerCertFile)
	}
	cas, err := e.published(ctx)
	if err != nil {
		return warn(IDChain, hintOf(err, "fix the management CA first"), "not checked: %v (see %s)", err, IDCA)
	}
	if cas == nil {
		return ok(IDChain, "the provided chain carries no CA: agents verify it with the system roots or your own CA")
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	leaf := chain[0]
	// At a time the leaf is valid: expiry is checkServerCertificate's.
	at := e.in.Now
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	}
	verified, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		hint := "run 'p2ptls ca renew-server' (a running serve serves the new certificate within seconds), or finish or abort the CA rotation in progress ('p2ptls ca rotate status')"
		if e.modeName() == management.ModeProvided {
			hint = "put the leaf first, then its intermediates, then the CA agents trust, into MANAGEMENT_TLS_CERT_FILE"
		}
		return fail(IDChain, hint, "the management certificate chain in %s (leaf issued by %q) does not verify with the CA management publishes for agents (%s): %v: every agent refuses it",
			from, leaf.Issuer.CommonName, fingerprints(cas), err)
	}
	path := verified[0]
	return ok(IDChain, "the management certificate chain in %s verifies with the published CA %s", from, pki.Fingerprint(path[len(path)-1]))
}

// certNames lists what a certificate covers: DNS names, then IPs.
func certNames(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func coverList(c *x509.Certificate) string {
	if n := certNames(c); len(n) > 0 {
		return names(n)
	}
	return "no name at all"
}
