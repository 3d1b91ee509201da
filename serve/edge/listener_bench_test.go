package edge

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// BenchmarkListenHandshake is full TLS 1.3 handshakes through Listen, as
// hsbench's client does them (handshake, close), with handshake workers
// reused ("reused") and with a new goroutine per connection ("fresh",
// maxIdleWorkers = 0). Client and server share the process, so compare
// the two in one run (-count 4 interleaves them), not absolute figures:
//
//	go test -run XXX -bench ListenHandshake -count 4 ./serve/edge/
func BenchmarkListenHandshake(b *testing.B) {
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"bench.example.com"}), time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		idle int32
	}{{"reused", maxIdleWorkers}, {"fresh", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			defer func(old int32) { maxIdleWorkers = old }(maxIdleWorkers)
			maxIdleWorkers = bc.idle
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			cfg := TLSConfig()
			cfg.Certificates = []tls.Certificate{cert}
			// The server's goroutines carry the case as a profile label:
			// go tool pprof -tagfocus case=fresh.
			var ln net.Listener
			pprof.Do(context.Background(), pprof.Labels("case", bc.name), func(context.Context) {
				ln = Listen(inner, cfg, DefaultLimits(), slog.New(slog.DiscardHandler))
			})
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			addr := inner.Addr().String()
			b.ReportAllocs()
			before := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "bench.example.com",
						MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}})
					if err != nil {
						b.Error(err)
						return
					}
					c.Close()
				}
			})
			// Process CPU, not wall time: the machine is shared, and the
			// difference between the two cases is the server's.
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
