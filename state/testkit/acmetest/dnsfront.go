package acmetest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsFront is the DNS server that lego and pebble query. challtestsrv answers
// SOA and NS queries with NOTIMP, and lego's zone lookup (FindZoneByFqdn, used
// by the Cloudflare provider) needs SOA; so the front answers SOA and NS for
// the test zones (and names under them) itself, as their authoritative server
// would, and relays every other query to challtestsrv.
type dnsFront struct {
	zones    []string // lower case, with trailing dot
	upstream string   // challtestsrv's DNS address
	addr     string
	udp, tcp *dns.Server
}

func startDNSFront(zones []string, upstream string) (*dnsFront, error) {
	f := &dnsFront{upstream: upstream}
	for _, z := range zones {
		f.zones = append(f.zones, dns.Fqdn(strings.ToLower(z)))
	}
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	for range 20 { // UDP and TCP on the same port
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		pc, err = net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			break
		}
		ln.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("DNS front: listen: %w", err)
	}
	f.addr = ln.Addr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	f.udp = &dns.Server{PacketConn: pc, Handler: f, NotifyStartedFunc: notify}
	f.tcp = &dns.Server{Listener: ln, Handler: f, NotifyStartedFunc: notify,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	for _, s := range []*dns.Server{f.udp, f.tcp} {
		go func() { errs <- s.ActivateAndServe() }()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-errs:
			f.stop()
			return nil, fmt.Errorf("DNS front: %w", err)
		}
	}
	return f, nil
}

func (f *dnsFront) stop() {
	_ = f.udp.Shutdown()
	_ = f.tcp.Shutdown()
}

// zoneOf returns the test zone name is in ("" if none).
func (f *dnsFront) zoneOf(name string) string {
	name = strings.ToLower(name)
	best := ""
	for _, z := range f.zones {
		if (name == z || strings.HasSuffix(name, "."+z)) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

func (f *dnsFront) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) == 1 {
		q := r.Question[0]
		if q.Qclass == dns.ClassINET && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeNS) {
			if z := f.zoneOf(q.Name); z != "" {
				_ = w.WriteMsg(f.answerZone(r, q, z))
				return
			}
		}
	}
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(r, f.upstream)
	if err != nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// answerZone answers an SOA or NS query for a name in zone z: the records at
// the apex, NODATA with the SOA in the authority section below it.
func (f *dnsFront) answerZone(r *dns.Msg, q dns.Question, z string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	soa := &dns.SOA{
		Hdr:     dns.RR_Header{Name: z, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns1." + z,
		Mbox:    "hostmaster." + z,
		Serial:  1,
		Refresh: 60,
		Retry:   60,
		Expire:  600,
		Minttl:  1,
	}
	switch {
	case !strings.EqualFold(q.Name, z):
		m.Ns = append(m.Ns, soa)
	case q.Qtype == dns.TypeSOA:
		m.Answer = append(m.Answer, soa)
	default:
		for _, ns := range []string{"ns1." + z, "ns2." + z} {
			m.Answer = append(m.Answer, &dns.NS{
				Hdr: dns.RR_Header{Name: z, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 60},
				Ns:  ns,
			})
		}
	}
	return m
}

// query asks addr one question over network ("udp" or "tcp").
func query(network, addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 200 * time.Millisecond}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("no answer")
	}
	return r, nil
}
