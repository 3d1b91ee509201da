package cftest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/providers/dns/cloudflare"
	"github.com/miekg/dns"

	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// lego's Cloudflare provider finds the zone of a name with an SOA lookup
// through lego's (process-wide) recursive nameservers: TestMain points them at
// a small authoritative server for these zones. "other.test" exists in DNS but
// is not held by the Cloudflare account of the tests.
var dnsZones = []string{"example.test.", "other.test."}

func TestMain(m *testing.M) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen udp:", err)
		os.Exit(1)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(soaHandler)}
	go func() { _ = srv.ActivateAndServe() }()
	_ = dns01.AddRecursiveNameservers([]string{pc.LocalAddr().String()})(nil)
	code := m.Run()
	_ = srv.Shutdown()
	os.Exit(code)
}

func soaHandler(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		for _, z := range dnsZones {
			if name != z && !strings.HasSuffix(name, "."+z) {
				continue
			}
			soa := &dns.SOA{Hdr: dns.RR_Header{Name: z, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
				Ns: "ns1." + z, Mbox: "hostmaster." + z, Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60}
			if name == z && q.Qtype == dns.TypeSOA {
				m.Answer = append(m.Answer, soa)
			} else {
				m.Ns = append(m.Ns, soa)
			}
			_ = w.WriteMsg(m)
			return
		}
	}
	m.Rcode = dns.RcodeNameError
	_ = w.WriteMsg(m)
}

type txtEvent struct {
	fqdn, value string
	present     bool
}

type recorder struct {
	mu     sync.Mutex
	events []txtEvent
}

func (r *recorder) on(fqdn, value string, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, txtEvent{fqdn, value, present})
}

func (r *recorder) get() []txtEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func newProvider(t *testing.T, s *cftest.Server, token string) *cloudflare.DNSProvider {
	t.Helper()
	cfg := cloudflare.NewDefaultConfig()
	cfg.AuthToken = token
	cfg.BaseURL = s.URL
	cfg.PollingInterval = 100 * time.Millisecond
	cfg.PropagationTimeout = 2 * time.Second
	cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	p, err := cloudflare.NewDNSProviderConfig(cfg)
	if err != nil {
		t.Fatalf("NewDNSProviderConfig: %v", err)
	}
	return p
}

func value(domain, keyAuth string) string {
	return dns01.GetChallengeInfo(domain, keyAuth).Value
}

const challName = "_acme-challenge.example.test"

func TestLegoProviderPresentCleanUp(t *testing.T) {
	rec := &recorder{}
	s := cftest.New(t, cftest.Options{
		Zones:  []string{"example.test"},
		Tokens: map[string]cftest.Perms{"good": {ZoneRead: true, DNSEdit: true}},
		OnTXT: func(fqdn, v string, present bool) {
			rec.on(fqdn, v, present)
		},
	})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || !strings.HasSuffix(s.URL, "/client/v4") {
		t.Fatalf("URL = %q", s.URL)
	}
	p := newProvider(t, s, "good")

	// A wildcard and its apex: lego presents both under the same name.
	vWild, vApex := value("example.test", "ka-wild"), value("example.test", "ka-apex")
	if err := p.Present("example.test", "tok-wild", "ka-wild"); err != nil {
		t.Fatalf("Present wildcard: %v", err)
	}
	if err := p.Present("example.test", "tok-apex", "ka-apex"); err != nil {
		t.Fatalf("Present apex: %v", err)
	}
	if got := s.TXT(challName); !slices.Equal(got, []string{vWild, vApex}) {
		t.Fatalf("TXT after Present = %q, want %q", got, []string{vWild, vApex})
	}
	if got := s.TXT("_ACME-challenge.example.test."); len(got) != 2 {
		t.Fatalf("TXT with dot/case = %q", got)
	}
	want := []txtEvent{{challName, vWild, true}, {challName, vApex, true}}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Fatalf("OnTXT events = %+v, want %+v", got, want)
	}

	if err := p.CleanUp("example.test", "tok-wild", "ka-wild"); err != nil {
		t.Fatalf("CleanUp wildcard: %v", err)
	}
	if got := s.TXT(challName); !slices.Equal(got, []string{vApex}) {
		t.Fatalf("TXT after first CleanUp = %q, want %q", got, []string{vApex})
	}
	if err := p.CleanUp("example.test", "tok-apex", "ka-apex"); err != nil {
		t.Fatalf("CleanUp apex: %v", err)
	}
	if got := s.TXT(challName); got != nil {
		t.Fatalf("TXT after CleanUp = %q, want none", got)
	}
	want = append(want, txtEvent{challName, vWild, false}, txtEvent{challName, vApex, false})
	if got := rec.get(); !slices.Equal(got, want) {
		t.Fatalf("OnTXT events = %+v, want %+v", got, want)
	}
	// The provider caches the zone id: 1 zone lookup, 2 creations, 2 deletions.
	if n := s.Requests(); n != 5 {
		t.Errorf("Requests() = %d, want 5", n)
	}
}

func TestLegoProviderPermissions(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  []string
	}{
		{"no DNS edit", "zone-only", []string{"failed to create TXT record", "403", "10000: Authentication error"}},
		{"no zone read", "dns-only", []string{"failed to find zone example.test", "403", "10000: Authentication error"}},
		{"unknown token", "bogus", []string{"failed to find zone", "403", "9109: Invalid access token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := cftest.New(t, cftest.Options{
				Zones: []string{"example.test"},
				Tokens: map[string]cftest.Perms{
					"zone-only": {ZoneRead: true},
					"dns-only":  {DNSEdit: true},
				},
				OnTXT: rec.on,
			})
			err := newProvider(t, s, tc.token).Present("example.test", "tok", "ka")
			if err == nil {
				t.Fatal("Present succeeded")
			}
			t.Logf("Present: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := s.TXT(challName); got != nil {
				t.Errorf("TXT = %q, want none", got)
			}
			if ev := rec.get(); len(ev) != 0 {
				t.Errorf("OnTXT called: %+v", ev)
			}
		})
	}
}

func TestLegoProviderZoneNotHeld(t *testing.T) {
	s := cftest.New(t, cftest.Options{
		Zones:  []string{"example.test"},
		Tokens: map[string]cftest.Perms{"good": {ZoneRead: true, DNSEdit: true}},
	})
	err := newProvider(t, s, "good").Present("www.other.test", "tok", "ka")
	if err == nil || !strings.Contains(err.Error(), "failed to find zone other.test") ||
		!strings.Contains(err.Error(), "zone could not be found") {
		t.Fatalf("Present = %v, want zone not found", err)
	}
}

// call does one raw API request and decodes the envelope.
func call(t *testing.T, s *cftest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("%s %s: decode: %v", method, path, err)
	}
	for _, k := range []string{"success", "errors", "messages", "result"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s %s: envelope without %q: %v", method, path, k, env)
		}
	}
	return resp.StatusCode, env
}

func errCode(env map[string]any) float64 {
	errs, _ := env["errors"].([]any)
	if len(errs) == 0 {
		return 0
	}
	e, _ := errs[0].(map[string]any)
	c, _ := e["code"].(float64)
	return c
}

func TestAPI(t *testing.T) {
	rec := &recorder{}
	s := cftest.New(t, cftest.Options{
		Zones: []string{"example.test", "Second.Test."},
		Tokens: map[string]cftest.Perms{
			"good":      {ZoneRead: true, DNSEdit: true},
			"zone-only": {ZoneRead: true},
			"nothing":   {},
		},
		OnTXT: rec.on,
	})
	zid := s.ZoneID("example.test")
	if zid == "" || s.ZoneID("second.test") == "" || s.ZoneID("nope.test") != "" {
		t.Fatalf("ZoneID: %q %q %q", zid, s.ZoneID("second.test"), s.ZoneID("nope.test"))
	}

	t.Run("verify", func(t *testing.T) {
		code, env := call(t, s, "GET", "/user/tokens/verify", "nothing", "")
		res, _ := env["result"].(map[string]any)
		if code != 200 || env["success"] != true || res["status"] != "active" || res["id"] == "" {
			t.Errorf("valid token: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/user/tokens/verify", "bogus", "")
		if code != 401 || env["success"] != false || errCode(env) != 1000 {
			t.Errorf("invalid token: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/user/tokens/verify", "", "")
		if code != 400 || errCode(env) != 6003 {
			t.Errorf("no token: %d %v", code, env)
		}
	})

	t.Run("zones", func(t *testing.T) {
		code, env := call(t, s, "GET", "/zones", "zone-only", "")
		zs, _ := env["result"].([]any)
		if code != 200 || len(zs) != 2 {
			t.Fatalf("list: %d %v", code, env)
		}
		if info, _ := env["result_info"].(map[string]any); info["total_count"] != float64(2) {
			t.Errorf("result_info = %v", env["result_info"])
		}
		code, env = call(t, s, "GET", "/zones?name=second.test&per_page=50", "good", "")
		zs, _ = env["result"].([]any)
		if code != 200 || len(zs) != 1 || zs[0].(map[string]any)["name"] != "second.test" {
			t.Fatalf("by name: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/zones?name=nope.test", "good", "")
		zs, _ = env["result"].([]any)
		if code != 200 || zs == nil || len(zs) != 0 {
			t.Fatalf("unknown name: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/zones", "nothing", "")
		if code != 403 || errCode(env) != 10000 {
			t.Errorf("without ZoneRead: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/zones", "bogus", "")
		if code != 403 || errCode(env) != 9109 {
			t.Errorf("invalid token: %d %v", code, env)
		}
		code, env = call(t, s, "GET", "/zones/"+zid, "zone-only", "")
		if code != 200 || env["result"].(map[string]any)["id"] != zid {
			t.Errorf("get zone: %d %v", code, env)
		}
	})

	t.Run("records", func(t *testing.T) {
		base := "/zones/" + zid + "/dns_records"
		body := `{"type":"TXT","name":"_acme-challenge.a.example.test","content":"\"v1\"","ttl":120}`
		code, env := call(t, s, "POST", base, "good", body)
		res, _ := env["result"].(map[string]any)
		id, _ := res["id"].(string)
		if code != 200 || len(id) != 32 || res["content"] != `"v1"` || res["zone_id"] != zid {
			t.Fatalf("create: %d %v", code, env)
		}
		code, env = call(t, s, "POST", base, "good", body)
		if code != 400 || errCode(env) != 81058 {
			t.Errorf("identical: %d %v", code, env)
		}
		code, env = call(t, s, "POST", base, "good", `{"type":"TXT","name":"x.other.test","content":"v"}`)
		if code != 400 || errCode(env) != 9005 {
			t.Errorf("outside zone: %d %v", code, env)
		}
		code, env = call(t, s, "POST", base, "good", `{"type":"TXT","name":"x.example.test","content":"v","ttl":5}`)
		if code != 400 {
			t.Errorf("bad ttl: %d %v", code, env)
		}
		code, env = call(t, s, "POST", base, "good", `{`)
		if code != 400 {
			t.Errorf("bad json: %d %v", code, env)
		}
		code, env = call(t, s, "POST", base, "zone-only", `{"type":"TXT","name":"x.example.test","content":"v"}`)
		if code != 403 || errCode(env) != 10000 {
			t.Errorf("without DNSEdit: %d %v", code, env)
		}
		code, env = call(t, s, "POST", "/zones/0123/dns_records", "good", body)
		if code != 404 || errCode(env) != 7003 {
			t.Errorf("unknown zone: %d %v", code, env)
		}
		if got := s.TXT("_acme-challenge.a.example.test"); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("TXT = %q", got)
		}

		code, env = call(t, s, "GET", base+"?type=TXT&name=_acme-challenge.a.example.test", "good", "")
		if rs, _ := env["result"].([]any); code != 200 || len(rs) != 1 {
			t.Errorf("list: %d %v", code, env)
		}
		code, env = call(t, s, "GET", base+"?type=A", "good", "")
		if rs, _ := env["result"].([]any); code != 200 || len(rs) != 0 {
			t.Errorf("list type A: %d %v", code, env)
		}
		code, env = call(t, s, "GET", base, "zone-only", "")
		if code != 403 || errCode(env) != 10000 {
			t.Errorf("list without DNSEdit: %d %v", code, env)
		}

		code, env = call(t, s, "DELETE", base+"/"+id, "zone-only", "")
		if code != 403 || errCode(env) != 10000 {
			t.Errorf("delete without DNSEdit: %d %v", code, env)
		}
		code, env = call(t, s, "DELETE", base+"/"+id, "good", "")
		if res, _ := env["result"].(map[string]any); code != 200 || res["id"] != id {
			t.Errorf("delete: %d %v", code, env)
		}
		code, env = call(t, s, "DELETE", base+"/"+id, "good", "")
		if code != 404 || errCode(env) != 81044 {
			t.Errorf("delete again: %d %v", code, env)
		}
		if got := s.TXT("_acme-challenge.a.example.test"); got != nil {
			t.Errorf("TXT after delete = %q", got)
		}
		want := []txtEvent{
			{"_acme-challenge.a.example.test", "v1", true},
			{"_acme-challenge.a.example.test", "v1", false},
		}
		if got := rec.get(); !slices.Equal(got, want) {
			t.Errorf("OnTXT = %+v, want %+v", got, want)
		}
	})

	t.Run("unknown route", func(t *testing.T) {
		code, env := call(t, s, "GET", "/accounts", "good", "")
		if code != 404 || errCode(env) != 7000 {
			t.Errorf("%d %v", code, env)
		}
		code, env = call(t, s, "PUT", "/zones", "good", "{}")
		if code != 404 || errCode(env) != 7000 {
			t.Errorf("%d %v", code, env)
		}
	})
}

// Concurrent creations and deletions: OnTXT sees every change exactly once,
// in an order consistent with TXT.
func TestConcurrentOnTXT(t *testing.T) {
	var mu sync.Mutex
	live := map[string]bool{}
	var sp atomic.Pointer[cftest.Server]
	s := cftest.New(t, cftest.Options{
		Zones:  []string{"example.test"},
		Tokens: map[string]cftest.Perms{"good": {ZoneRead: true, DNSEdit: true}},
		OnTXT: func(fqdn, v string, present bool) {
			mu.Lock()
			defer mu.Unlock()
			if live[v] == present {
				t.Errorf("OnTXT(%q, %v) out of order", v, present)
			}
			live[v] = present
			if slices.Contains(sp.Load().TXT(fqdn), v) != present {
				t.Errorf("OnTXT(%q, %v) before TXT reflects it", v, present)
			}
		},
	})
	sp.Store(s)
	p := newProvider(t, s, "good")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			tok, ka := fmt.Sprint("tok", i), fmt.Sprint("ka", i)
			if err := p.Present("example.test", tok, ka); err != nil {
				t.Error(err)
				return
			}
			if err := p.CleanUp("example.test", tok, ka); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := s.TXT(challName); got != nil {
		t.Errorf("TXT = %q", got)
	}
	if len(live) != 8 {
		t.Errorf("saw %d values", len(live))
	}
}
