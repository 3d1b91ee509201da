package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/parallel"
	"github.com/p2pstream/p2ptls/state/text"
)

// checkACMEAccount: ACME mappings need a registered account.
func checkACMEAccount(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDACMEAccount)
	}
	n := 0
	for _, m := range e.cfg.Mappings {
		if m.Source == state.SourceACME {
			n++
		}
	}
	if n == 0 {
		return ok(IDACMEAccount, "no ACME mappings")
	}
	acct, err := acme.LoadAccount(ctx, e.s, e.cfg.ACME.Directory)
	if err != nil {
		return fail(IDACMEAccount, hintOf(err, "register one with 'p2ptls acme account register --email E --agree-tos'"),
			"%s cannot be issued: %v", plural(n, "ACME mapping"), err)
	}
	return ok(IDACMEAccount, "%s issue with the account %s at %s", plural(n, "ACME mapping"), acct.Email, acct.Directory)
}

// issueHint says how mapping m gets a new certificate.
func issueHint(m state.Mapping) string {
	switch m.Source {
	case state.SourceManual:
		return fmt.Sprintf("upload a new certificate: 'p2ptls mapping remove %s', then 'p2ptls mapping add --id %s … --manual --cert-file F --key-file F'", m.ID, m.ID)
	case state.SourceFile:
		return fmt.Sprintf("replace %s and %s on disk; p2ptls reads them again when they change", m.CertFile, m.KeyFile)
	case state.SourceSelfSigned:
		return fmt.Sprintf("run 'p2ptls cert issue %s'", m.ID)
	}
	return fmt.Sprintf("run 'p2ptls cert issue %s' (a running serve issues new ACME mappings by itself)", m.ID)
}

// checkWildcardChallenge: a wildcard can only be validated with DNS-01
// (mapping add refuses the others; a hand edit may not).
func checkWildcardChallenge(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDWildcardChallenge)
	}
	var f findings
	wildcards := 0
	for _, m := range e.cfg.Mappings {
		var wild []string
		for _, h := range m.Hosts {
			if hostname.IsWildcard(h) {
				wild = append(wild, h)
			}
		}
		if len(wild) == 0 || m.Source != state.SourceACME {
			continue
		}
		wildcards++
		if m.Challenge == state.ChallengeHTTP01 || m.Challenge == state.ChallengeTLSALPN01 {
			f.fail(fmt.Sprintf("use DNS-01 for %s: set challenge = \"dns-01\" and dns_credential = \"NAME\" in p2ptls.toml, or 'p2ptls mapping remove %s' and add it again with --acme --challenge dns-01 --dns-credential NAME", m.ID, m.ID),
				"mapping %s: the wildcard %s cannot be validated with %s; wildcards need DNS-01", m.ID, names(wild), strings.ToUpper(m.Challenge))
		}
	}
	if len(e.cfg.Mappings) == 0 {
		return ok(IDWildcardChallenge, "no mappings")
	}
	if wildcards == 0 {
		return ok(IDWildcardChallenge, "no ACME mapping has a wildcard host")
	}
	return f.check(IDWildcardChallenge, fmt.Sprintf("%s with wildcard hosts, all with DNS-01", plural(wildcards, "ACME mapping")))
}

// checkDNSCredential: every DNS-01 mapping names a credential that exists,
// is enabled and has its token.
func checkDNSCredential(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDDNSCredential)
	}
	infos, _ := dnscred.List(ctx, e.s, e.cfg)
	creds := make(map[string]dnscred.Info, len(infos))
	for _, c := range infos {
		creds[c.Name] = c
	}
	var f findings
	n := 0
	for _, m := range e.cfg.Mappings {
		if m.Source != state.SourceACME || m.Challenge != state.ChallengeDNS01 {
			continue
		}
		n++
		c, found := creds[m.DNSCredential]
		switch {
		case m.DNSCredential == "":
			f.fail("name one with dns_credential in p2ptls.toml (see 'p2ptls dns-credential list')", "mapping %s uses DNS-01 but names no DNS credential", m.ID)
		case !found:
			f.fail(fmt.Sprintf("add it with 'p2ptls dns-credential add %s --provider cloudflare --api-token-file F'", m.DNSCredential),
				"mapping %s uses the DNS credential %q, which does not exist", m.ID, m.DNSCredential)
		case !c.Enabled:
			f.fail(fmt.Sprintf("enable it with 'p2ptls dns-credential enable %s'", c.Name),
				"mapping %s uses the DNS credential %q, which is disabled: issuance and renewal refuse it", m.ID, c.Name)
		case c.Problem != "":
			f.fail(fmt.Sprintf("give the token again with 'p2ptls dns-credential add %s --replace --api-token-file F'", c.Name),
				"mapping %s uses the DNS credential %q, which cannot be used: %s", m.ID, c.Name, c.Problem)
		}
	}
	if n == 0 {
		return ok(IDDNSCredential, "no DNS-01 mappings")
	}
	return f.check(IDDNSCredential, fmt.Sprintf("%s use enabled DNS credentials with their tokens", plural(n, "DNS-01 mapping")))
}

// port returns the port of a listen address, "" when it has none.
func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// checkChallengePorts: HTTP-01 is answered on the listener's HTTP address
// and TLS-ALPN-01 on its HTTPS one, and the ACME server validates on the
// public ports 80 and 443. No HTTP address for HTTP-01 fails (issuance
// cannot work); another port warns (it works behind NAT or port
// forwarding that maps the public port to it).
func checkChallengePorts(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDChallengePorts)
	}
	var f findings
	n := 0
	const forward = "public validation connects to port %s of %s: forward it to %s (NAT, port forwarding, a proxy), or listen on :%s"
	for _, m := range e.cfg.Mappings {
		if m.Source != state.SourceACME || (m.Challenge != state.ChallengeHTTP01 && m.Challenge != state.ChallengeTLSALPN01) {
			continue
		}
		n++
		l, found := e.cfg.Listener(m.Listener)
		if !found {
			f.fail("see "+IDConfig, "mapping %s names the listener %q, which does not exist", m.ID, m.Listener)
			continue
		}
		host := "its hosts"
		if len(m.Hosts) > 0 {
			host = m.Hosts[0]
		}
		if m.Challenge == state.ChallengeHTTP01 {
			switch p := port(l.HTTPAddr); {
			case l.HTTPAddr == "":
				f.fail(fmt.Sprintf("give listener %s an HTTP address (http_addr = \":80\" in p2ptls.toml, or remove its mappings and the listener and add them again with --http-addr :80), or use --challenge tls-alpn-01 or dns-01 for %s", l.Name, m.ID),
					"mapping %s uses HTTP-01, but listener %s has no HTTP address: the ACME server has nothing to fetch the challenge from", m.ID, l.Name)
			case p != "80":
				f.warn(fmt.Sprintf(forward, "80", host, l.HTTPAddr, "80"),
					"mapping %s uses HTTP-01 on listener %s's HTTP address %s, not port 80", m.ID, l.Name, l.HTTPAddr)
			}
			continue
		}
		if p := port(l.Addr); p != "443" {
			f.warn(fmt.Sprintf(forward, "443", host, l.Addr, "443"),
				"mapping %s uses TLS-ALPN-01 on listener %s's address %s, not port 443", m.ID, l.Name, l.Addr)
		}
	}
	if n == 0 {
		return ok(IDChallengePorts, "no HTTP-01 or TLS-ALPN-01 mappings")
	}
	return f.check(IDChallengePorts, fmt.Sprintf("%s validate on listeners at ports 80 (HTTP-01) and 443 (TLS-ALPN-01)", plural(n, "HTTP-01/TLS-ALPN-01 mapping")))
}

// checkCoverage: every mapping has a certificate whose key matches and
// whose names cover every host of the mapping; a client asking for a host
// gets that mapping's certificate and refuses it otherwise.
func checkCoverage(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDCoverage)
	}
	if len(e.cfg.Mappings) == 0 {
		return ok(IDCoverage, "no mappings")
	}
	var f findings
	hosts := 0
	// Loading a certificate and its key (reading, parsing and matching
	// them) is the cost of this check: one worker per core does it, and
	// keeps of each only what the findings need, in doctor's memo, so that
	// the next run parses only the pairs whose files changed.
	type loaded struct {
		err     error
		missing []string // hosts the certificate does not cover
		covers  string   // what it covers, when some are missing
	}
	results := make([]loaded, len(e.cfg.Mappings))
	scan := e.walked()
	parallel.Each(len(results), func(i int) bool {
		m := e.cfg.Mappings[i]
		dnsNames, covered, put, err := e.loadPair(ctx, e.memo, scan, m, i)
		if put {
			e.pairsStored.Add(1)
		}
		if err != nil {
			results[i].err = err
			return true
		}
		for _, h := range m.Hosts {
			if !covers(dnsNames, h) {
				results[i].missing = append(results[i].missing, h)
			}
		}
		if len(results[i].missing) > 0 {
			results[i].covers = covered
		}
		return true
	})
	for i, m := range e.cfg.Mappings {
		hosts += len(m.Hosts)
		err := results[i].err
		if err != nil && servedMeanwhile(&f, m, err, e) {
			continue
		}
		switch {
		case errors.Is(err, fs.ErrNotExist) && m.Source == state.SourceACME:
			f.fail(issueHint(m), "mapping %s (%s) has no certificate: not issued yet", m.ID, names(m.Hosts))
			continue
		case errors.Is(err, fs.ErrNotExist):
			f.fail(issueHint(m), "mapping %s (%s) has no certificate: %v", m.ID, names(m.Hosts), err)
			continue
		case err != nil:
			f.fail(issueHint(m), "%v", err)
			continue
		}
		if missing := results[i].missing; len(missing) > 0 {
			f.fail(issueHint(m), "mapping %s: its certificate does not cover %s (it covers %s)", m.ID, names(missing), results[i].covers)
		}
	}
	return f.check(IDCoverage, fmt.Sprintf("every host of %s (%s) is covered by its mapping's certificate", plural(len(e.cfg.Mappings), "mapping"), plural(hosts, "host")))
}

// servedMeanwhile reports a mapping without a usable certificate whose
// hosts a wildcard mapping with a certificate serves meanwhile (serve's
// rule: exact with a certificate > wildcard with a certificate > fallback).
// Clients get a certificate they accept while that one is valid, so it is a
// warning, not a failure; it returns false when no wildcard serves it, or
// one whose certificate clients refuse, and the caller fails it as before.
func servedMeanwhile(f *findings, m state.Mapping, err error, e *env) bool {
	info, _ := e.stateOfID(m.ID)
	if info.ServedBy == "" {
		return false
	}
	why := "not issued yet"
	if !errors.Is(err, fs.ErrNotExist) || m.Source != state.SourceACME {
		why = err.Error()
	}
	for _, id := range strings.Split(info.ServedBy, ",") {
		if w, _ := e.stateOfID(id); w.Status != mappings.StatusValid && w.Status != mappings.StatusExpiring {
			return false
		}
	}
	by := "mapping " + info.ServedBy + " serves its hosts with its valid wildcard certificate"
	if strings.Contains(info.ServedBy, ",") {
		by = "mappings " + strings.ReplaceAll(info.ServedBy, ",", ", ") + " serve its hosts with their valid wildcard certificates"
	}
	f.warn(issueHint(m), "mapping %s (%s) has no certificate (%s); meanwhile %s", m.ID, names(m.Hosts), why, by)
	return true
}

// covers reports whether a certificate with these SANs (coverNames) is
// accepted for host: an IP host needs its IP SAN; a DNS host an exact DNS
// SAN, or a wildcard SAN over its leftmost label. A wildcard host needs the
// wildcard SAN itself.
func covers(sans []string, host string) bool {
	ip := hostname.IsIP(host)
	for _, san := range sans {
		if addr, isIP := strings.CutPrefix(san, ipSANPrefix); isIP || ip {
			if isIP && ip && addr == host {
				return true
			}
			continue
		}
		if hostname.Matches(strings.ToLower(strings.TrimSuffix(san, ".")), host) {
			return true
		}
	}
	return false
}

// checkExpiry: no certificate is expired, and none is inside its renewal
// window without having been renewed.
func checkExpiry(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDExpiry)
	}
	if len(e.infos) == 0 {
		return ok(IDExpiry, "no mappings")
	}
	var f findings
	withCert := 0
	for _, info := range e.infos {
		if info.m == nil || info.NotAfter == nil {
			continue // no certificate: mappings.coverage reports it
		}
		withCert++
		m := *info.m
		switch {
		case info.Status == mappings.StatusExpired && e.in.Now.Before(*info.NotBefore):
			f.fail(issueHint(m), "mapping %s: its certificate is not valid before %s, and clients refuse it", info.m.ID, text.Stamp(*info.NotBefore))
		case info.Status == mappings.StatusExpired:
			f.fail(issueHint(m), "mapping %s: its certificate expired on %s, and clients refuse it", info.m.ID, text.Stamp(*info.NotAfter))
		case info.Status == mappings.StatusExpiring && m.Source != state.SourceACME:
			// An ACME certificate past its renewal time is mappings.renewal_due's
			// warning, after a grace for serve or the timer to renew it.
			f.warn(issueHint(m), "mapping %s: its %s certificate is due for renewal; replace it before it expires on %s", info.m.ID, m.Source, text.Stamp(*info.NotAfter))
		}
	}
	return f.check(IDExpiry, fmt.Sprintf("no certificate is expired or overdue for renewal (%s checked)", plural(withCert, "certificate")))
}

// checkLastRenewal: the last ACME attempt of every mapping succeeded. A
// failure while the previous certificate still serves warns; one that left
// the mapping without a usable certificate fails.
func checkLastRenewal(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDLastRenewal)
	}
	var f findings
	n := 0
	for _, info := range e.infos {
		if info.m == nil || info.m.Source != state.SourceACME {
			continue
		}
		n++
		if info.LastError == "" {
			continue
		}
		when := ""
		if info.LastAttemptAt != nil {
			when = " at " + text.Stamp(*info.LastAttemptAt)
		}
		retry := ""
		if info.RetryAt != nil {
			retry = "; the next attempt is not before " + text.Stamp(*info.RetryAt)
		}
		hint := fmt.Sprintf("fix the cause, then 'p2ptls cert issue %s' (serve and 'cert renew' retry by themselves with back-off)", info.m.ID)
		switch info.Status {
		case mappings.StatusValid, mappings.StatusExpiring:
			f.warn(hint, "mapping %s: the last attempt%s failed: %s; the current certificate serves until %s%s", info.m.ID, when, info.LastError, text.Stamp(*info.NotAfter), retry)
		default:
			f.fail(hint, "mapping %s: the last attempt%s failed: %s; no valid certificate serves its hosts%s", info.m.ID, when, info.LastError, retry)
		}
	}
	if n == 0 {
		return ok(IDLastRenewal, "no ACME mappings")
	}
	return f.check(IDLastRenewal, fmt.Sprintf("the last attempt of each of %s succeeded (or none was made yet)", plural(n, "ACME mapping")))
}
