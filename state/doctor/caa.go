package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
)

// The bounds of the CAA check: at 100k mappings it must end, not make
// 100k × depth queries one after the other. Names are deduplicated (and
// so are the parents they share), caaWorkers look up at once, each query
// waits caaQueryTimeout per resolver, and the whole check stops after
// caaTimeCap, saying how far it got.
const (
	caaWorkers      = 32
	caaQueryTimeout = 3 * time.Second
)

// caaTimeCap is a variable for the test of a check cut short.
var caaTimeCap = 60 * time.Second

// caaTarget is one name to check: a host, or a wildcard's base name, with
// what the order for it will use.
type caaTarget struct {
	name      string // FQDN, lower case, without "*."
	wildcard  bool
	challenge string
}

// checkCAA: with --network, every ACME host's CAA record set (RFC 8659)
// allows the issuing account's CA, with accounturi and validationmethods
// (RFC 8657) that fit the account and the mapping's challenge.
func checkCAA(ctx context.Context, e *env) Check {
	if !e.in.Network {
		return ok(IDCAA, "not checked: give --network to look up the CAA records of the ACME hosts")
	}
	if e.cfg == nil {
		return skipped(IDCAA)
	}
	targets, owners := caaTargets(e.cfg)
	if len(targets) == 0 {
		return ok(IDCAA, "no ACME mappings with host names")
	}
	acct, err := acme.LoadAccount(ctx, e.s, e.cfg.ACME.Directory)
	if err != nil {
		return warn(IDCAA, "fix the ACME account first", "not checked: there is no ACME account to check the CAA records against (see %s)", IDACMEAccount)
	}
	meta, err := acme.FetchDirectory(ctx, acct)
	if err != nil {
		return warn(IDCAA, hintOf(err, "check the network"), "not checked: %v", err)
	}
	if len(meta.CAAIdentities) == 0 {
		return warn(IDCAA, "ask the CA which issuer domain name its CAA records use", "not checked: the ACME server at %s names no caaIdentities in its directory", meta.URL)
	}
	resolvers, err := caaResolvers(e)
	if err != nil {
		return warn(IDCAA, "give --dns-resolvers HOST:PORT", "not checked: %v", err)
	}
	results := lookupAll(ctx, resolvers, targets)

	var f findings
	checked, restricted := 0, 0
	policy := caaPolicy{identities: meta.CAAIdentities, accountURI: acct.URI}
	for i, t := range targets {
		r := results[i]
		if !r.done {
			continue
		}
		checked++
		who := fmt.Sprintf("%s (mapping %s)", displayTarget(t), owners[i])
		if r.err != nil {
			f.warn("check the DNS, or --dns-resolvers", "%s: the CAA lookup failed: %v", who, r.err)
			continue
		}
		if len(r.rrs) > 0 {
			restricted++
		}
		if msg, fix := policy.check(t, r); msg != "" {
			f.fail(fix, "%s: %s", who, msg)
		}
	}
	if checked < len(targets) {
		f.warn("run it again, or check the DNS resolvers' speed",
			"stopped early after %s: %d of %d names checked", caaTimeCap, checked, len(targets))
	}
	return f.check(IDCAA, fmt.Sprintf("%s checked against %s for %s: %d with CAA records that allow it, %d without any",
		plural(len(targets), "name"), strings.Join(resolvers, ","), strings.Join(meta.CAAIdentities, ", "), restricted, len(targets)-restricted))
}

// lookupAll finds the relevant CAA set of every target, caaWorkers at a
// time, for at most caaTimeCap; a result not done was not reached.
func lookupAll(ctx context.Context, resolvers []string, targets []caaTarget) []caaResult {
	ctx, cancel := context.WithTimeout(ctx, caaTimeCap)
	defer cancel()
	l := &caaLookup{resolvers: resolvers, cache: map[string]*caaAnswer{}}
	results := make([]caaResult, len(targets))
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(caaWorkers, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(targets) {
					return
				}
				results[i] = l.relevant(ctx, targets[i].name)
			}
		}()
	}
	wg.Wait()
	return results
}

func displayTarget(t caaTarget) string {
	n := strings.TrimSuffix(t.name, ".")
	if t.wildcard {
		return "*." + n
	}
	return n
}

// caaTargets returns the distinct (name, wildcard, challenge) of the ACME
// mappings' hosts, IP addresses left out (CAA is about domain names), with
// the first mapping that has each.
func caaTargets(cfg *state.Config) ([]caaTarget, []string) {
	seen := map[caaTarget]bool{}
	var targets []caaTarget
	var owners []string
	for _, m := range cfg.Mappings {
		if m.Source != state.SourceACME {
			continue
		}
		for _, h := range m.Hosts {
			if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
				continue
			}
			t := caaTarget{name: dns.Fqdn(strings.ToLower(h)), challenge: m.Challenge}
			if base, ok := strings.CutPrefix(t.name, "*."); ok {
				t.name, t.wildcard = base, true
			}
			if !seen[t] {
				seen[t] = true
				targets, owners = append(targets, t), append(owners, m.ID)
			}
		}
	}
	return targets, owners
}

// caaResolvers are the resolvers DNS-01 uses: Input.DNSResolvers
// (--dns-resolvers), p2ptls.toml's acme.dns_resolvers, else the system's.
func caaResolvers(e *env) ([]string, error) {
	if len(e.in.DNSResolvers) > 0 {
		return e.in.DNSResolvers, nil
	}
	if len(e.cfg.ACME.DNSResolvers) > 0 {
		return e.cfg.ACME.DNSResolvers, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return nil, errors.New("no DNS resolver is configured (/etc/resolv.conf)")
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

// caaResult is the relevant CAA record set of a name (RFC 8659 section
// 3): the first non-empty one climbing from the name towards the root.
type caaResult struct {
	done  bool // false when the check stopped before this name
	owner string
	rrs   []*dns.CAA
	err   error
}

// caaAnswer is the CAA records at one name, looked up once.
type caaAnswer struct {
	ready chan struct{}
	rrs   []*dns.CAA
	err   error
}

// caaLookup looks CAA records up, each name once however many hosts
// share it as a parent.
type caaLookup struct {
	resolvers []string
	mu        sync.Mutex
	cache     map[string]*caaAnswer
}

func (l *caaLookup) relevant(ctx context.Context, name string) caaResult {
	for n := name; n != "." && n != ""; {
		a := l.at(ctx, n)
		if ctx.Err() != nil {
			return caaResult{}
		}
		if a.err != nil {
			return caaResult{done: true, owner: n, err: a.err}
		}
		if len(a.rrs) > 0 {
			return caaResult{done: true, owner: n, rrs: a.rrs}
		}
		_, parent, _ := strings.Cut(n, ".")
		n = parent
	}
	return caaResult{done: true}
}

// at returns the CAA records at name, from the cache or the resolvers.
func (l *caaLookup) at(ctx context.Context, name string) *caaAnswer {
	l.mu.Lock()
	a, ok := l.cache[name]
	if !ok {
		a = &caaAnswer{ready: make(chan struct{})}
		l.cache[name] = a
	}
	l.mu.Unlock()
	if ok {
		select {
		case <-a.ready:
		case <-ctx.Done():
			return &caaAnswer{err: ctx.Err()}
		}
		return a
	}
	a.rrs, a.err = l.query(ctx, name)
	close(a.ready)
	return a
}

// query asks each resolver in turn until one answers; NXDOMAIN and an
// empty answer are "no records", any other rcode or no answer an error.
func (l *caaLookup) query(ctx context.Context, name string) ([]*dns.CAA, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeCAA)
	m.SetEdns0(4096, false)
	var lastErr error
	for _, r := range l.resolvers {
		c := &dns.Client{Timeout: caaQueryTimeout}
		resp, _, err := c.ExchangeContext(ctx, m, r)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, m, r)
		}
		if err != nil {
			lastErr = fmt.Errorf("%s CAA via %s: %w", strings.TrimSuffix(name, "."), r, err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			lastErr = fmt.Errorf("%s CAA via %s: %s", strings.TrimSuffix(name, "."), r, dns.RcodeToString[resp.Rcode])
			continue
		}
		var rrs []*dns.CAA
		for _, rr := range resp.Answer {
			if caa, ok := rr.(*dns.CAA); ok {
				rrs = append(rrs, caa)
			}
		}
		return rrs, nil
	}
	return nil, lastErr
}

// caaPolicy is what the account's orders need from a CAA record set.
type caaPolicy struct {
	identities []string // the directory's caaIdentities
	accountURI string
}

// caaProperty is an issue or issuewild value: an issuer domain name ("" =
// no CA) and its parameters.
type caaProperty struct {
	issuer string
	params map[string]string
}

func parseCAAValue(v string) caaProperty {
	parts := strings.Split(v, ";")
	p := caaProperty{issuer: strings.ToLower(strings.TrimSpace(parts[0])), params: map[string]string{}}
	for _, kv := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
			p.params[k] = strings.TrimSpace(val)
		}
	}
	return p
}

// knownCAATags are the property tags RFC 8659 and RFC 8657 define; an
// unknown one with the critical flag forbids issuance.
var knownCAATags = []string{"issue", "issuewild", "iodef", "contactemail", "contactphone"}

// check returns why the relevant set r forbids the order for t, and the
// fix as a literal record; "" when it allows it.
func (p caaPolicy) check(t caaTarget, r caaResult) (msg, fix string) {
	if len(r.rrs) == 0 {
		return "", ""
	}
	owner := r.owner
	show := func(rr *dns.CAA) string { return fmt.Sprintf("%s CAA %d %s %q", owner, rr.Flag, rr.Tag, rr.Value) }
	for _, rr := range r.rrs {
		if rr.Flag&128 != 0 && !slices.Contains(knownCAATags, strings.ToLower(rr.Tag)) {
			return fmt.Sprintf("the record %s is critical and unknown, so no CA may issue", show(rr)),
				fmt.Sprintf("remove the record %s", show(rr))
		}
	}
	// RFC 8659 section 4.3: for a wildcard, issuewild properties, when
	// there are any, take precedence over issue.
	tag := "issue"
	if t.wildcard && slices.ContainsFunc(r.rrs, func(rr *dns.CAA) bool { return strings.EqualFold(rr.Tag, "issuewild") }) {
		tag = "issuewild"
	}
	var props []*dns.CAA
	for _, rr := range r.rrs {
		if strings.EqualFold(rr.Tag, tag) {
			props = append(props, rr)
		}
	}
	if len(props) == 0 {
		return "", "" // only iodef and the like: no restriction
	}
	var ours []*dns.CAA
	for _, rr := range props {
		if slices.Contains(p.identities, parseCAAValue(rr.Value).issuer) {
			ours = append(ours, rr)
		}
	}
	if len(ours) == 0 {
		shown := make([]string, len(props))
		for i, rr := range props {
			shown[i] = show(rr)
		}
		return fmt.Sprintf("CAA does not allow %s: %s", strings.Join(p.identities, ", "), strings.Join(shown, ", ")),
			fmt.Sprintf("add the record %s CAA 0 %s %q", owner, tag, p.identities[0])
	}
	var why string
	for _, rr := range ours {
		prop := parseCAAValue(rr.Value)
		good := prop
		good.params = maps.Clone(prop.params)
		if u, ok := prop.params["accounturi"]; ok && u != p.accountURI {
			why = fmt.Sprintf("the record %s allows only the account %s, not p2ptls's %s", show(rr), u, p.accountURI)
			good.params["accounturi"] = p.accountURI
		}
		if vm, ok := prop.params["validationmethods"]; ok && !slices.Contains(splitMethods(vm), t.challenge) {
			if why == "" {
				why = fmt.Sprintf("the record %s does not allow the mapping's challenge %s", show(rr), t.challenge)
			}
			good.params["validationmethods"] = vm + "," + t.challenge
		}
		if why == "" {
			return "", ""
		}
		if fix == "" {
			fix = fmt.Sprintf("change the record %s to %s CAA %d %s %q", show(rr), owner, rr.Flag, rr.Tag, good.String())
		}
	}
	return why, fix
}

// String is the property's value in CAA syntax, parameters sorted.
func (p caaProperty) String() string {
	s := p.issuer
	for _, k := range slices.Sorted(maps.Keys(p.params)) {
		s += "; " + k + "=" + p.params[k]
	}
	return s
}

func splitMethods(v string) []string {
	var out []string
	for _, m := range strings.Split(v, ",") {
		if m = strings.ToLower(strings.TrimSpace(m)); m != "" {
			out = append(out, m)
		}
	}
	return out
}
