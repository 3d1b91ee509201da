package management

import (
	"net"
	"testing"
)

// The start log names a URL a browser can open: never [::] or 0.0.0.0.
func TestUIURL(t *testing.T) {
	for _, c := range []struct {
		scheme string
		addr   net.Addr
		want   string
	}{
		{"https", &net.TCPAddr{IP: net.IPv6unspecified, Port: 8443}, "https://localhost:8443/ui/"},
		{"https", &net.TCPAddr{IP: net.IPv4zero, Port: 8443}, "https://localhost:8443/ui/"},
		{"https", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}, "https://127.0.0.1:9000/ui/"},
		{"https", &net.TCPAddr{IP: net.IPv6loopback, Port: 8443}, "https://[::1]:8443/ui/"},
		{"http", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 80}, "http://192.0.2.7:80/ui/"},
	} {
		if got := uiURL(c.scheme, c.addr); got != c.want {
			t.Errorf("uiURL(%s, %s) = %s, want %s", c.scheme, c.addr, got, c.want)
		}
	}
}
