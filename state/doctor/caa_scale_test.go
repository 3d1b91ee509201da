package doctor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestCAALookupScale looks up P2PTLS_CAA_SCALE names (default 2,000)
// under 100 parents against a local resolver that answers every query
// empty: every name is reached well within the time cap, and each parent
// is asked once. 'P2PTLS_CAA_SCALE=100000 go test -run CAALookupScale -v'
// measures the 100k case.
func TestCAALookupScale(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("P2PTLS_CAA_SCALE")); err == nil && v > 0 {
		n = v
	}
	addr := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})
	targets := make([]caaTarget, n)
	for i := range targets {
		targets[i] = caaTarget{name: fmt.Sprintf("h%d.p%d.scale.test.", i, i%100), challenge: "http-01"}
	}
	start := time.Now()
	results := lookupAll(context.Background(), []string{addr}, targets)
	for i, r := range results {
		if !r.done || r.err != nil {
			t.Fatalf("%s: done %v err %v", targets[i].name, r.done, r.err)
		}
	}
	t.Logf("%d names (%d queries) in %v", n, n+100+2, time.Since(start))
}
