package runstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// BackoffFile is the ACME back-off count serve's renewal loop writes after
// each pass. It is a file of its own, not a field of File, because the
// renewal loop and the listeners write on their own schedules.
const BackoffFile = state.RunDir + "/acme_backoff.json"

// Backoff is the ACME back-off count ("acme_backoff" in status JSON and
// GET /api/v1/status): the renewal pass counts it from the metas it reads
// anyway, so that neither status nor the API reads a meta per mapping.
// CountedAt is when: the end of serve's last pass, or now when status
// counted it itself because no serve runs.
type Backoff struct {
	mappings.Backoff
	CountedAt time.Time `json:"counted_at"`
	// PID is the serve that counted it: one left by an earlier serve is
	// not the running one's count.
	PID int `json:"pid,omitempty"`
}

// WriteBackoff saves b for status and the API.
func WriteBackoff(ctx context.Context, s state.Store, b *Backoff) error {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ACME back-off: %w", err)
	}
	return s.Write(ctx, BackoffFile, append(out, '\n'), state.SecretMode)
}

// ReadBackoff loads the last count serve wrote; nil when there is none.
func ReadBackoff(ctx context.Context, s state.Store) (*Backoff, error) {
	raw, err := s.Read(ctx, BackoffFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BackoffFile, err)
	}
	var b Backoff
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("read %s: %w", BackoffFile, err)
	}
	return &b, nil
}

// Reported is a status with its ACME back-off count: the JSON of
// "status --output json" and GET /api/v1/status. ACMEBackoff is null while
// the running serve has not finished its first renewal pass.
type Reported struct {
	*Status
	ACMEBackoff *Backoff `json:"acme_backoff"`
}

// ServeBackoff is the back-off count of the serve st describes, when it
// runs and has counted (nil otherwise): a count left by an earlier serve is
// not its.
func ServeBackoff(ctx context.Context, s state.Store, st *Status) (*Backoff, error) {
	if !st.ServeRunning {
		return nil, nil
	}
	b, err := ReadBackoff(ctx, s)
	if err != nil || b == nil || b.PID != st.PID {
		return nil, err
	}
	return b, nil
}
