package acme

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/providers/dns/cloudflare"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/challenge"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/text"
)

// httpProvider publishes HTTP-01 answers into the state. lego's Provider
// methods take no context, so the order's travels with the provider;
// cleaning up goes on after the order is interrupted.
type httpProvider struct {
	ctx context.Context
	s   state.Store
}

func (p httpProvider) Present(_, token, keyAuth string) error {
	return challenge.PublishHTTP01(p.ctx, p.s, token, keyAuth)
}
func (p httpProvider) CleanUp(_, token, _ string) error {
	return challenge.RemoveHTTP01(context.WithoutCancel(p.ctx), p.s, token)
}

// alpnProvider publishes TLS-ALPN-01 certificates into the state.
type alpnProvider struct {
	ctx context.Context
	s   state.Store
}

func (p alpnProvider) Present(domain, _, keyAuth string) error {
	return challenge.PublishTLSALPN01(p.ctx, p.s, domain, keyAuth)
}
func (p alpnProvider) CleanUp(domain, _, _ string) error {
	return challenge.RemoveTLSALPN01(context.WithoutCancel(p.ctx), p.s, domain)
}

// setSolver configures the one challenge the mapping asks for (lego would
// prefer TLS-ALPN-01 if several were set) and returns a func that releases
// whatever it bound.
func setSolver(ctx context.Context, client *lego.Client, s state.Store, cfg *state.Config, m state.Mapping, resolvers []string) (func(), error) {
	l, ok := cfg.Listener(m.Listener)
	if !ok {
		return nil, fault.Invalidf("", "listener %q of mapping %q does not exist", m.Listener, m.ID)
	}
	switch m.Challenge {
	case state.ChallengeHTTP01:
		if l.HTTPAddr == "" {
			return nil, fault.Failf(fmt.Sprintf("give listener %q an HTTP address (--http-addr :80), or use another challenge", l.Name),
				"listener %q has no HTTP address, and HTTP-01 validation connects to it", l.Name)
		}
		stop, err := answerIfNoServe(ctx, s, *l, l.HTTPAddr, "http-01", httpAnswerer(s))
		if err != nil {
			return nil, err
		}
		return stop, client.Challenge.SetHTTP01Provider(httpProvider{ctx, s})
	case state.ChallengeTLSALPN01:
		stop, err := answerIfNoServe(ctx, s, *l, l.Addr, "tls-alpn-01", alpnAnswerer(s))
		if err != nil {
			return nil, err
		}
		return stop, client.Challenge.SetTLSALPN01Provider(alpnProvider{ctx, s})
	case state.ChallengeDNS01:
		cred, err := dnscred.Lookup(ctx, s, cfg, m.DNSCredential)
		if err != nil {
			return nil, err
		}
		cc := cloudflare.NewDefaultConfig()
		cc.AuthToken = cred.Token
		if cred.APIBaseURL != "" {
			cc.BaseURL = cred.APIBaseURL
		}
		if len(resolvers) > 0 {
			cc.PollingInterval = time.Second
		}
		provider, err := cloudflare.NewDNSProviderConfig(cc)
		if err != nil {
			return nil, fmt.Errorf("DNS credential %q: %s", cred.Name, text.OneLine(err.Error()))
		}
		// lego's propagation wait polls without a context: each check
		// gives up when ctx is done, which ends the wait.
		opts := []dns01.ChallengeOption{dns01.WrapPreCheck(func(_, fqdn, value string, check dns01.PreCheckFunc) (bool, error) {
			return checkUnlessDone(ctx, func() (bool, error) { return check(fqdn, value) })
		})}
		if len(resolvers) > 0 {
			// Check propagation at the given resolvers only, and compare
			// the TXT value there rather than at the zone's own servers.
			opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement(),
				dns01.RecursiveNSsPropagationRequirement())
		}
		// lego's resolver list is one for the process: the gate puts these
		// in place (none: the system's) and holds them until the order is
		// done, while orders with another list wait.
		leave, err := resolverGate.enter(ctx, resolvers)
		if err != nil {
			return nil, err
		}
		if err := client.Challenge.SetDNS01Provider(provider, opts...); err != nil {
			leave()
			return nil, err
		}
		return leave, nil
	}
	return nil, fault.Invalidf("", "mapping %q: unknown challenge %q", m.ID, m.Challenge)
}

// answerIfNoServe binds addr for the duration of the validation when no
// running serve answers challenges on listener l; orders that run at once
// share the socket (bindShared).
func answerIfNoServe(ctx context.Context, s state.Store, l state.Listener, addr, kind string, serve func(context.Context, net.Listener) func()) (func(), error) {
	if st, err := runstatus.Read(ctx, s); err == nil && st.ServeRunning {
		for _, rl := range st.Listeners {
			if rl.Name == l.Name && rl.Listening {
				return func() {}, nil
			}
		}
	}
	stop, err := bindShared(s, addr, kind, serve)
	if err != nil {
		return nil, fault.Failf("start 'p2ptls serve' (it answers challenges), or run this as a user that may bind the port",
			"no serve answers for listener %q and %s cannot be bound for validation: %v", l.Name, addr, err)
	}
	return stop, nil
}

// httpAnswerer answers HTTP-01 from the state until stopped.
func httpAnswerer(s state.Store) func(context.Context, net.Listener) func() {
	return func(ctx context.Context, ln net.Listener) func() {
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := strings.CutPrefix(r.URL.Path, challenge.HTTP01Path)
			b, err := challenge.HTTP01(ctx, s, token)
			if !ok || err != nil {
				http.NotFound(w, r)
				return
			}
			w.Write(b)
		})}
		go srv.Serve(ln)
		return func() { srv.Close() }
	}
}

// alpnAnswerer completes TLS-ALPN-01 handshakes from the state until stopped.
func alpnAnswerer(s state.Store) func(context.Context, net.Listener) func() {
	return func(ctx context.Context, ln net.Listener) func() {
		cfg := &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{challenge.ALPNProto},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				return challenge.TLSALPN01(ctx, s, hello.ServerName)
			},
		}
		go func() {
			for {
				conn, err := ln.Accept()
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err != nil {
					continue
				}
				go func() {
					defer conn.Close()
					conn.SetDeadline(time.Now().Add(10 * time.Second))
					tls.Server(conn, cfg).Handshake()
				}()
			}
		}()
		return func() { ln.Close() }
	}
}

// checkUnlessDone runs one propagation check, and returns as soon as ctx
// is done, whatever the check still waits for (a resolver that does not
// answer holds it for lego's DNS timeout); its result is then dropped.
func checkUnlessDone(ctx context.Context, check func() (bool, error)) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, fmt.Errorf("DNS propagation check: %w", context.Cause(ctx))
	}
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := check()
		done <- result{ok, err}
	}()
	select {
	case r := <-done:
		return r.ok, r.err
	case <-ctx.Done():
		// stop is true: lego's wait ends with this error.
		return true, fmt.Errorf("DNS propagation check: %w", context.Cause(ctx))
	}
}
