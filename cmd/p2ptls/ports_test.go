package main

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for the servers the tests start are taken below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range, 32768–60999 by default):
// a port picked with ":0" lies inside it, and between the pick and the
// server's bind any outgoing connection of another test (an etcd or ACME
// client, a handshake loop) may take it. Below the range only another
// pick can, and picks never repeat within the process.
var ports struct {
	sync.Mutex
	given map[int]bool
	low   int // first port of the ephemeral range; 0 until read
}

// lowPortsFrom is the first port the picks may use.
const lowPortsFrom = 10000

// freeLowPort is a port free just now on every one of hosts, below the
// ephemeral range, never handed out before in this process.
func freeLowPort(t testing.TB, hosts ...string) string {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.low == 0 {
		ports.given = map[int]bool{}
		ports.low = 32768
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					ports.low = n
				}
			}
		}
	}
	if ports.low-lowPortsFrom < 1000 {
		t.Fatalf("the ephemeral port range starts at %d: no room below it for test servers", ports.low)
	}
	for range 1000 {
		p := lowPortsFrom + rand.IntN(ports.low-lowPortsFrom)
		if ports.given[p] {
			continue
		}
		port := strconv.Itoa(p)
		free := true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, port))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			ports.given[p] = true
			return port
		}
	}
	t.Fatalf("no port below %d free on all of %v in 1000 tries", ports.low, hosts)
	return ""
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago (see freeLowPort).
func freeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", freeLowPort(t, "127.0.0.1"))
}

// lhPortFree is a port that was free just now on every one of hosts, so
// that a test can say nothing else listens there.
func lhPortFree(t testing.TB, hosts ...string) string {
	t.Helper()
	for _, h := range hosts {
		if ln, err := net.Listen("tcp", net.JoinHostPort(h, "0")); err != nil {
			t.Skipf("cannot listen on %s: %v", h, err)
		} else {
			ln.Close()
		}
	}
	return freeLowPort(t, hosts...)
}
