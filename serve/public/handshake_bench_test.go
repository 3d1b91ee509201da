package public

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/packedcert"
	"github.com/p2pstream/p2ptls/state/pki"
)

// BenchmarkHandshake drives full TLS 1.3 handshakes through a real public
// listener with N mappings, the way hsbench's client does (handshake,
// close, no request), and, alternately, through a bare crypto/tls server
// with one certificate (hsbench's baseline) in the same process. Every
// goroutine of the public listener carries the profile label side=p2ptls,
// every one of the bare server side=bare, so one CPU profile gives the
// ratio of the two servers' work measured at the same moments, which a
// shared machine does not skew as it skews two runs:
//
//	TMPDIR=/dev/shm go test -run XXX -bench Handshake/n=1$ -benchtime 5000x -cpuprofile cpu.out ./serve/public/
//	go tool pprof -top -tagfocus side=p2ptls cpu.out    # and side=bare
//
// The garbage collector's background work is labelled neither (hsbench,
// with one process per server, counts it); ns/op and allocs/op include
// the client and both servers.
func BenchmarkHandshake(b *testing.B) {
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"bare.example.com"}), time.Now(), 30*24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			store := benchFixture(b, n)
			s := New(Options{Store: store, Log: discardLog, Limits: edge.DefaultLimits()})
			pprof.Do(context.Background(), pprof.Labels("side", "p2ptls"), func(ctx context.Context) { err = s.Start(ctx) })
			if err != nil {
				b.Fatal(err)
			}
			defer stopServer(s)
			l := s.listeners["bench"]
			// A serve that has run a while has read every certificate;
			// the first handshake of each would otherwise dominate.
			for _, e := range l.view.Load().entries.all() {
				if err := e.load(store); err != nil {
					b.Fatal(err)
				}
			}
			// And paced the collector for them, as Run's tick does.
			runtime.GC()
			gogc := debug.SetGCPercent(100) // restored for the next size
			defer debug.SetGCPercent(gogc)
			s.mu.Lock()
			s.gc.pace()
			s.mu.Unlock()
			b.Logf("GOGC %d (off the heap: %d MiB)", s.gc.set, packedcert.MappedBytes()>>20)
			var bare net.Listener
			pprof.Do(context.Background(), pprof.Labels("side", "bare"), func(context.Context) { bare, err = serveBare(&cert) })
			if err != nil {
				b.Fatal(err)
			}
			defer bare.Close()
			addr, bareAddr := l.addr.String(), bare.Addr().String()
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			cpu, gc, cycles := processCPU(), gcCPU(), gcCycles()
			defer func() {
				// Cycles per handshake times a cycle's cost (BenchmarkWarmHeapGC)
				// is the collector's share without the estimate's noise.
				b.ReportMetric(float64(gcCycles()-cycles)*1000/float64(b.N), "gc-cycles/1k-op")
				// CPU time, unlike ns/op, is not stretched by other
				// processes on a shared machine; the collector's share is
				// what the mappings' memory costs per handshake.
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
				b.ReportMetric((gcCPU()-gc)*1e9/float64(b.N), "gc-cpu-ns/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
				for pb.Next() {
					if err := benchHandshake(addr, benchName(r, n)); err != nil {
						b.Error(err)
						return
					}
					if err := benchHandshake(bareAddr, "bare.example.com"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// serveBare is hsbench's baseline: crypto/tls with one certificate, no
// session tickets, each connection's handshake and close on a goroutine of
// its own.
func serveBare(cert *tls.Certificate) (net.Listener, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert},
		MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln, nil
}

// benchName is a name benchFixture's mappings serve, chosen uniformly.
func benchName(r *rand.Rand, n int) string {
	i := r.IntN(n)
	if i%4 == 3 {
		return fmt.Sprintf("x.w%06d.example.net", i)
	}
	return fmt.Sprintf("h%06d.example.com", i)
}

// benchHandshake is one full handshake for serverName, then close.
func benchHandshake(addr, serverName string) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
	})
	if err != nil {
		return err
	}
	if c.ConnectionState().DidResume {
		c.Close()
		return fmt.Errorf("handshake for %s resumed", serverName)
	}
	return c.Close()
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gcCPU is the runtime's estimate of the CPU seconds spent collecting.
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

// gcCycles is the number of completed GC cycles.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
