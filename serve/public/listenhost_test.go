package public

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/challenge"
	"github.com/p2pstream/p2ptls/state/fault"
)

func TestParseListenHost(t *testing.T) {
	tests := []struct {
		in, want string
		err      string // part of the error; "" when valid
	}{
		{"", "", ""},
		{"  ", "", ""},
		{"127.0.0.2", "127.0.0.2", ""},
		{" 127.0.0.3\n", "127.0.0.3", ""},
		{"::1", "::1", ""},
		{"[::1]", "::1", ""},
		{"[2001:DB8:0::1]", "2001:db8::1", ""},
		{"fe80::1%eth0", "fe80::1%eth0", ""},
		{"localhost", "localhost", ""},
		{"Replica-2.Internal.", "replica-2.internal", ""},
		{"127.0.0.2:8443", "", `has port 8443; give only the host (each listener keeps its own port), e.g. "127.0.0.2"`},
		{"[::1]:443", "", `has port 443`},
		{"localhost:443", "", `has port 443`},
		{"http://127.0.0.2", "", "is a URL"},
		{"[127.0.0.1]", "", "not an IPv6 address"},
		{"[localhost]", "", "not an IPv6 address"},
		{"[::1", "", "unmatched bracket"},
		{"::1]", "", "unmatched bracket"},
		{"*", "", "is a wildcard"},
		{"*.example.com", "", "is a wildcard"},
		{"two words", "", `contains " "`},
		{"under_score.example", "", `contains "_"`},
		{"127.1", "", "ends in a numeric label"},
		{"-bad.example", "", "hyphen"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseListenHost(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("ParseListenHost(%q): %v", tc.in, err)
			case tc.err == "" && got != tc.want:
				t.Fatalf("ParseListenHost(%q) = %q, want %q", tc.in, got, tc.want)
			case tc.err != "" && err == nil:
				t.Fatalf("ParseListenHost(%q) = %q, want an error with %q", tc.in, got, tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("ParseListenHost(%q): %q, want it to say %q", tc.in, err, tc.err)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	tests := []struct{ addr, host, want string }{
		{":443", "127.0.0.2", "127.0.0.2:443"},
		{"0.0.0.0:80", "::1", "[::1]:80"},
		{"[::]:8443", "localhost", "localhost:8443"},
		{"10.0.0.5:443", "127.0.0.3", "127.0.0.3:443"}, // a specific host too
		{"[fe80::1%eth0]:443", "127.0.0.2", "127.0.0.2:443"},
		{"127.0.0.1:443", "fe80::1%eth0", "[fe80::1%eth0]:443"},
		{"", "127.0.0.2", ""}, // no HTTP address stays none
		{"10.0.0.5:443", "", "10.0.0.5:443"},
	}
	for _, tc := range tests {
		if got := rebind(tc.addr, tc.host); got != tc.want {
			t.Errorf("rebind(%q, %q) = %q, want %q", tc.addr, tc.host, got, tc.want)
		}
	}
}

// portFreeOn is a port that was free just now on every one of hosts.
func portFreeOn(t *testing.T, hosts ...string) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", hosts[0], err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		free := true
		for _, h := range hosts[1:] {
			other, err := net.Listen("tcp", net.JoinHostPort(h, port))
			if err != nil {
				free = false
				break
			}
			other.Close()
		}
		ln.Close()
		if free {
			return port
		}
	}
	t.Fatalf("no port free on all of %v in 50 tries", hosts)
	return ""
}

// newReboundFixture is a state with listener "web" configured on
// 127.0.0.1 (HTTPS and HTTP) and a Server that rebinds it onto host.
func newReboundFixture(t *testing.T, host string, mappings []state.Mapping) *fixture {
	t.Helper()
	port, httpPort := portFreeOn(t, host, "127.0.0.1"), portFreeOn(t, host, "127.0.0.1")
	return newFixtureWith(t, state.Listener{Name: "web", Addr: "127.0.0.1:" + port, HTTPAddr: "127.0.0.1:" + httpPort}, mappings, Options{ListenHost: host})
}

// refused fails unless nothing accepts connections on addr.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("something listens on %s, want nothing there", addr)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}

// TestListenHostRebindsHTTPSAndHTTP: the listener configured on 127.0.0.1
// serves on 127.0.0.2 with its ports, HTTPS and HTTP (HTTP-01 and the
// redirect), nothing is bound on 127.0.0.1, the no-SNI selection follows
// the address clients really connect to, and the status says both.
func TestListenHostRebindsHTTPSAndHTTP(t *testing.T) {
	up := upstream(t, "replica")
	f := newReboundFixture(t, "127.0.0.2", []state.Mapping{
		{ID: "app", Hosts: []string{"app.example.com"}, Upstream: up},
		{ID: "here", Hosts: []string{"127.0.0.2"}, Upstream: up},
		{ID: "configured", Hosts: []string{"127.0.0.1"}},
	})
	lc := f.cfg.Listeners[0]
	_, port, _ := net.SplitHostPort(lc.Addr)
	_, httpPort, _ := net.SplitHostPort(lc.HTTPAddr)
	bound, boundHTTP := "127.0.0.2:"+port, "127.0.0.2:"+httpPort
	if got := f.addr(); got != bound {
		t.Fatalf("listener bound on %s, want %s", got, bound)
	}
	cs, resp, body, err := f.get(&tls.Config{}, "app.example.com")
	if err != nil || cs.PeerCertificates[0].VerifyHostname("app.example.com") != nil || resp.StatusCode != 200 || body != "replica" {
		t.Fatalf("app.example.com on %s: %v %v %q", bound, err, resp, body)
	}
	refused(t, lc.Addr)
	refused(t, lc.HTTPAddr)

	// No SNI: the address the client connected to, 127.0.0.2, selects.
	f.wantServed("127.0.0.2", "127.0.0.2", "replica")

	// HTTP-01 and the redirect on the rebound HTTP address.
	if err := challenge.PublishHTTP01(context.Background(), f.store, "tok_1", "tok_1.keyauth"); err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := noRedirect.Get("http://" + boundHTTP + challenge.HTTP01Path + "tok_1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || string(b) != "tok_1.keyauth" {
		t.Errorf("HTTP-01 on %s: %d %q", boundHTTP, r.StatusCode, b)
	}
	req, _ := http.NewRequest("GET", "http://"+boundHTTP+"/x", nil)
	req.Host = "app.example.com"
	if r, err = noRedirect.Do(req); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusPermanentRedirect || loc != "https://app.example.com:"+port+"/x" {
		t.Errorf("redirect on %s: %d %q", boundHTTP, r.StatusCode, loc)
	}

	st := f.s.Status()
	if st.ListenHost != "127.0.0.2" || len(st.Listeners) != 1 {
		t.Fatalf("status: listen_host %q, %d listeners", st.ListenHost, len(st.Listeners))
	}
	ls := st.Listeners[0]
	if ls.Addr != lc.Addr || ls.HTTPAddr != lc.HTTPAddr || ls.BoundAddr != bound || ls.BoundHTTPAddr != boundHTTP || !ls.Listening {
		t.Errorf("status listener: addr %q http_addr %q bound_addr %q bound_http_addr %q listening %v; want %q %q %q %q true",
			ls.Addr, ls.HTTPAddr, ls.BoundAddr, ls.BoundHTTPAddr, ls.Listening, lc.Addr, lc.HTTPAddr, bound, boundHTTP)
	}
}

// TestListenHostFollowsReload: a listener added, or moved to a specific
// host this machine does not have, while serve runs is bound on the
// listen host with its own port.
func TestListenHostFollowsReload(t *testing.T) {
	f := newReboundFixture(t, "127.0.0.2", []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}}})
	latePort := portFreeOn(t, "127.0.0.2", "127.0.0.1")
	f.cfg.Listeners = append(f.cfg.Listeners, state.Listener{Name: "late", Addr: ":" + latePort})
	f.cfg.Mappings = append(f.cfg.Mappings, state.Mapping{ID: "late", Listener: "late", Hosts: []string{"late.example.com"}, Source: state.SourceManual})
	f.writeCert(f.cfg.Mappings[1])
	f.reload()
	if d, ok := waitServed("127.0.0.2:"+latePort, "late.example.com", 5*time.Second); !ok {
		t.Fatalf("the added listener is not served on 127.0.0.2:%s after %v", latePort, d)
	}
	refused(t, "127.0.0.1:"+latePort)

	// 192.0.2.5 (TEST-NET-1) is on no machine: only rebinding makes it bindable.
	movedPort := portFreeOn(t, "127.0.0.2")
	f.cfg.Listeners[0].Addr = "192.0.2.5:" + movedPort
	f.reload()
	if d, ok := waitServed("127.0.0.2:"+movedPort, "app.example.com", 5*time.Second); !ok {
		t.Fatalf("the moved listener is not served on 127.0.0.2:%s after %v", movedPort, d)
	}
	for _, ls := range f.s.Status().Listeners {
		want := map[string]string{"web": "127.0.0.2:" + movedPort, "late": "127.0.0.2:" + latePort}[ls.Name]
		if ls.BoundAddr != want || !ls.Listening || ls.Error != "" {
			t.Errorf("status of %s: bound_addr %q listening %v error %q, want %s listening", ls.Name, ls.BoundAddr, ls.Listening, ls.Error, want)
		}
	}
}

// TestListenHostNotOnThisMachine: a listen host this machine does not
// have stops serve at bind, naming the listener, both addresses and the
// fix; status reports where it tried.
func TestListenHostNotOnThisMachine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	cfg := &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}}}
	if err := state.SaveConfig(context.Background(), store, cfg); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: store, Log: discardLog, ListenHost: "192.0.2.1"})
	err := s.Start(context.Background())
	if err == nil {
		stopServer(s)
		t.Fatal("Start bound 192.0.2.1, which this machine should not have")
	}
	want := `listener "web": cannot listen on 192.0.2.1:8443, its address :8443 rebound by --listen-host 192.0.2.1: `
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("error %q, want it to start %q and be EADDRNOTAVAIL", err, want)
	}
	if h := fault.HintOf(err); !strings.Contains(h, "--listen-host (P2PTLS_LISTEN_HOST) an address this machine has") {
		t.Errorf("hint %q", h)
	}
	if fault.KindOf(err) != fault.Failure {
		t.Errorf("kind %v, want a failure (exit 1)", fault.KindOf(err))
	}
	ls := s.Status().Listeners[0]
	if ls.Listening || ls.BoundAddr != "192.0.2.1:8443" || ls.BoundHTTPAddr != "192.0.2.1:8080" || !strings.Contains(ls.Error, "192.0.2.1:8443") {
		t.Errorf("status: listening %v bound %q %q error %q", ls.Listening, ls.BoundAddr, ls.BoundHTTPAddr, ls.Error)
	}
}

// TestBindErrorNamesTheFix: bind's sentences, by cause and by whether the
// address was rebound.
func TestBindErrorNamesTheFix(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, port, _ := net.SplitHostPort(held.Addr().String())
	tests := []struct {
		desc, configured, host, msg, hint string
	}{
		{"held, not rebound", held.Addr().String(), "",
			"cannot listen on 127.0.0.1:" + port + ", its address: bind: address already in use",
			"stop what holds that address, or give listener web another one"},
		{"held, rebound", ":" + port, "127.0.0.1",
			"cannot listen on 127.0.0.1:" + port + ", its address :" + port + " rebound by --listen-host 127.0.0.1: bind: address already in use",
			"stop what holds that address, or give this replica another --listen-host"},
		{"not here, not rebound", "192.0.2.1:" + port, "",
			"cannot listen on 192.0.2.1:" + port + ", its address: bind: cannot assign requested address",
			"give listener web an address this machine has ('ip address' lists them)"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ln, err := bind("web", "address", tc.configured, rebind(tc.configured, tc.host), tc.host)
			if err == nil {
				ln.Close()
				t.Fatal("bound")
			}
			if err.Error() != tc.msg || fault.HintOf(err) != tc.hint {
				t.Errorf("got %q (hint %q)\nwant %q (hint %q)", err, fault.HintOf(err), tc.msg, tc.hint)
			}
		})
	}
}

// TestListenHostOtherForms: an IPv6 listen host binds in brackets and the
// no-SNI selection finds its mapping; a host name binds one of its
// addresses, and the status names the address, not the name.
func TestListenHostOtherForms(t *testing.T) {
	t.Run("IPv6", func(t *testing.T) {
		f := newReboundFixture(t, "::1", []state.Mapping{{ID: "v6", Hosts: []string{"::1"}}})
		_, port, _ := net.SplitHostPort(f.cfg.Listeners[0].Addr)
		if got, want := f.addr(), "[::1]:"+port; got != want {
			t.Fatalf("bound on %s, want %s", got, want)
		}
		f.wantServed("::1", "::1", "")
		refused(t, f.cfg.Listeners[0].Addr)
	})
	t.Run("a host name", func(t *testing.T) {
		// 192.0.2.5 is on no machine: only the rebinding makes it bindable.
		port := portFreeOn(t, "127.0.0.1")
		f := newFixtureWith(t, state.Listener{Name: "web", Addr: "192.0.2.5:" + port}, []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}}},
			Options{ListenHost: "localhost"})
		ls := f.s.Status().Listeners[0]
		host, bport, _ := net.SplitHostPort(ls.BoundAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || ls.BoundAddr != f.addr() || bport != port {
			t.Errorf("bound_addr %q (socket %s), want a loopback address with the configured port of %s", ls.BoundAddr, f.addr(), f.cfg.Listeners[0].Addr)
		}
		if _, _, _, err := f.get(&tls.Config{}, "app.example.com"); err != nil {
			t.Errorf("handshake on %s: %v", f.addr(), err)
		}
	})
}

// TestListenHostClash: listeners configured on different hosts with one
// port would all be bound on the listen host; the later one is refused
// with a sentence naming both, at start and on reload, and the other
// keeps serving.
func TestListenHostClash(t *testing.T) {
	port := portFreeOn(t, "127.0.0.2")
	a := state.Listener{Name: "a", Addr: "192.0.2.5:" + port}
	b := state.Listener{Name: "b", Addr: "192.0.2.6:" + port}
	wantMsg := `listener "b": its address 192.0.2.6:` + port + ` and the address 192.0.2.5:` + port + ` of listener a are both bound on 127.0.0.2:` + port + ` with --listen-host 127.0.0.2`

	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	if err := state.SaveConfig(context.Background(), store, &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{a, b}}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: store, Log: discardLog, ListenHost: "127.0.0.2"})
	err := s.Start(context.Background())
	if err == nil {
		stopServer(s)
		t.Fatal("Start bound two listeners on one address")
	}
	if err.Error() != wantMsg || !strings.Contains(fault.HintOf(err), "give listeners a and b different ports") {
		t.Errorf("at start: %q (hint %q)\nwant %q", err, fault.HintOf(err), wantMsg)
	}

	f := newFixtureWith(t, state.Listener{Name: "web", Addr: a.Addr, HTTPAddr: "192.0.2.5:" + portFreeOn(t, "127.0.0.2")},
		[]state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}}}, Options{ListenHost: "127.0.0.2"})
	f.cfg.Listeners = append(f.cfg.Listeners, state.Listener{Name: "late", Addr: "10.0.0.5:" + port})
	f.reload()
	for _, ls := range f.s.Status().Listeners {
		switch ls.Name {
		case "web":
			if !ls.Listening {
				t.Errorf("web stopped listening: %q", ls.Error)
			}
		case "late":
			if ls.Listening || !strings.Contains(ls.Error, "both bound on 127.0.0.2:"+port) {
				t.Errorf("late: listening %v, error %q; want it refused for sharing 127.0.0.2:%s", ls.Listening, ls.Error, port)
			}
		}
	}
	if _, _, _, err := f.get(&tls.Config{}, "app.example.com"); err != nil {
		t.Errorf("web after the refused reload: %v", err)
	}
}

func TestRebindClashes(t *testing.T) {
	tests := []struct {
		desc string
		ls   []state.Listener
		host string
		want map[string]string // listener -> part of its error
	}{
		{"no listen host", []state.Listener{{Name: "a", Addr: "10.0.0.1:443"}, {Name: "b", Addr: "10.0.0.2:443"}}, "", nil},
		{"different ports", []state.Listener{{Name: "a", Addr: "10.0.0.1:443", HTTPAddr: ":80"}, {Name: "b", Addr: "10.0.0.2:8443", HTTPAddr: ":8080"}}, "127.0.0.2", nil},
		{"same port", []state.Listener{{Name: "a", Addr: "10.0.0.1:443"}, {Name: "b", Addr: "10.0.0.2:443"}, {Name: "c", Addr: ":443"}}, "127.0.0.2",
			map[string]string{"b": "its address 10.0.0.2:443 and the address 10.0.0.1:443 of listener a", "c": "its address :443 and the address 10.0.0.1:443 of listener a"}},
		{"HTTP on another's HTTPS port", []state.Listener{{Name: "a", Addr: "10.0.0.1:8443"}, {Name: "b", Addr: "10.0.0.2:443", HTTPAddr: "10.0.0.2:8443"}}, "::1",
			map[string]string{"b": "its HTTP address 10.0.0.2:8443 and the address 10.0.0.1:8443 of listener a are both bound on [::1]:8443"}},
		{"its own two addresses", []state.Listener{{Name: "a", Addr: "10.0.0.1:443", HTTPAddr: "10.0.0.2:443"}}, "127.0.0.2",
			map[string]string{"a": "its HTTP address 10.0.0.2:443 and the address 10.0.0.1:443 of listener a"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := rebindClashes(tc.ls, tc.host)
			if len(got) != len(tc.want) {
				t.Fatalf("clashes %v, want %d", got, len(tc.want))
			}
			for name, part := range tc.want {
				if err := got[name]; err == nil || !strings.Contains(err.Error(), part) {
					t.Errorf("listener %s: %v, want it to say %q", name, err, part)
				}
			}
		})
	}
}
