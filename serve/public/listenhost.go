package public

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// Replicas that share one configuration each serve on their own address:
// Options.ListenHost replaces the host of every public listener's address
// and HTTP address, keeping its port. Every listener is rebound, also one
// whose configured host is specific ("10.0.0.5:443"): the configuration is
// the replicas' common one, so its hosts name no replica in particular.
// The management listener keeps MANAGEMENT_LISTEN.

// ParseListenHost validates a --listen-host value and returns it as
// net.JoinHostPort takes it: an IP address (IPv6 without brackets, its
// zone kept) or a lower-case host name. "" means no rebinding.
func ParseListenHost(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", nil
	}
	if strings.Contains(t, "://") {
		return "", fmt.Errorf("listen host %q is a URL; give only the host, e.g. \"127.0.0.2\"", s)
	}
	if inner, ok := strings.CutPrefix(t, "["); ok && strings.HasSuffix(inner, "]") {
		ip, err := netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		if err != nil || !ip.Is6() {
			return "", fmt.Errorf("listen host %q has brackets around something that is not an IPv6 address; give an IPv6 address such as \"[::1]\", or drop the brackets", s)
		}
		return ip.String(), nil
	}
	if ip, err := netip.ParseAddr(t); err == nil {
		return ip.String(), nil
	}
	if strings.ContainsAny(t, "[]") && !strings.Contains(t, "]:") {
		return "", fmt.Errorf("listen host %q has an unmatched bracket; write an IPv6 address as \"::1\" or \"[::1]\"", s)
	}
	if host, port, err := net.SplitHostPort(t); err == nil {
		return "", fmt.Errorf("listen host %q has port %s; give only the host (each listener keeps its own port), e.g. %q", s, port, host)
	}
	// The same rules as a listener's host: a DNS name, one label allowed.
	addr, err := hostname.ValidateListenAddr(net.JoinHostPort(t, "1"))
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(addr)
	return host, nil
}

// rebind is addr with its host replaced by host, its port kept; addr
// itself when host or addr is empty.
func rebind(addr, host string) string {
	if host == "" || addr == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil { // validated when saved; bind reports it
		return addr
	}
	return net.JoinHostPort(host, port)
}

// rebindClashes names the listeners that the listen host would bind on
// an address a listener before them (or their own other address) has
// already: configured on different hosts with the same port, they are
// all bound on one host. nil without a listen host.
func rebindClashes(ls []state.Listener, host string) map[string]error {
	if host == "" {
		return nil
	}
	type bound struct{ name, what, configured, addr string }
	var seen []bound
	clashes := map[string]error{}
	for _, l := range ls {
		for _, b := range []bound{{l.Name, "address", l.Addr, rebind(l.Addr, host)}, {l.Name, "HTTP address", l.HTTPAddr, rebind(l.HTTPAddr, host)}} {
			if b.addr == "" {
				continue
			}
			for _, o := range seen {
				if _, ok := clashes[l.Name]; !ok && hostname.Conflicts(o.addr, b.addr) {
					clashes[l.Name] = fault.Failf(fmt.Sprintf("give listeners %s and %s different ports: with --listen-host each is bound on %s with its configured port", o.name, l.Name, host),
						"its %s %s and the %s %s of listener %s are both bound on %s with --listen-host %s", b.what, b.configured, o.what, o.configured, o.name, b.addr, host)
				}
			}
			seen = append(seen, b)
		}
	}
	return clashes
}

// bind listens on addr, the listener's configured address with the listen
// host applied; what names the address ("address" or "HTTP address"). The
// caller names the listener; the error names the address and the fix.
func bind(name, what, configured, addr, host string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	cause := err
	var oe *net.OpError
	if errors.As(err, &oe) {
		cause = oe.Err // the address is named below already
	}
	where := fmt.Sprintf("cannot listen on %s, its %s", addr, what)
	if host != "" {
		where = fmt.Sprintf("cannot listen on %s, its %s %s rebound by --listen-host %s", addr, what, configured, host)
	}
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL) && host != "":
		hint = "give --listen-host (P2PTLS_LISTEN_HOST) an address this machine has ('ip address' lists them)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = fmt.Sprintf("give listener %s an address this machine has ('ip address' lists them)", name)
	case errors.Is(err, syscall.EACCES):
		hint = fmt.Sprintf("run serve with CAP_NET_BIND_SERVICE, or give listener %s a port from 1024 up", name)
	case host != "":
		hint = "stop what holds that address, or give this replica another --listen-host"
	default:
		hint = fmt.Sprintf("stop what holds that address, or give listener %s another one", name)
	}
	return nil, &fault.Error{Kind: fault.Failure, Msg: where, Hint: hint, Err: cause}
}
