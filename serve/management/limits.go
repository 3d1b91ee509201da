package management

import (
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
)

// Timeouts of the management server that edge.Limits does not carry.
const (
	// readTimeout bounds reading a whole request, body included: an API
	// body is at most maxBodyBytes.
	readTimeout = 30 * time.Second
	// writeTimeout is the management listener's write timeout when
	// Limits.WriteTimeout is 0 (edge leaves it to each kind of listener):
	// answers are small, and POST …/issue extends its own.
	writeTimeout = 60 * time.Second
)

// limitsOf is the Limits the management listener applies: o.Limits, or
// the documented defaults when serve gave none.
func limitsOf(o Options) edge.Limits {
	l := o.Limits
	if l == (edge.Limits{}) {
		l = edge.DefaultLimits()
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = writeTimeout
	}
	return l
}
