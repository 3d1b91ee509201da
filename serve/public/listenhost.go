package public

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

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
