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
}

// backoffFile is BackoffFile: the count and the serve that made it, since
// one left by an earlier serve is not the running one's.
type backoffFile struct {
	Backoff
	PID int `json:"pid"`
}

// WriteBackoff saves b, counted by the serve of pid, in file (BackoffFile,
// or a replica's ReplicaBackoffFile) for status and the API.
func WriteBackoff(ctx context.Context, s state.Store, file string, b Backoff, pid int) error {
	out, err := json.MarshalIndent(backoffFile{b, pid}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ACME back-off: %w", err)
	}
	return s.Write(ctx, file, append(out, '\n'), state.SecretMode)
}

// ReadBackoff loads the last count a serve wrote in file and the pid of
// that serve; nil when there is none.
func ReadBackoff(ctx context.Context, s state.Store, file string) (*Backoff, int, error) {
	raw, err := s.Read(ctx, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", file, err)
	}
	var f backoffFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", file, err)
	}
	return &f.Backoff, f.PID, nil
}

// Reported is a status with its ACME back-off count: the JSON of
// "status --output json" and GET /api/v1/status. ACMEBackoff is null while
// the running serve has not finished its first renewal pass.
type Reported struct {
	*Status
	ACMEBackoff *Backoff `json:"acme_backoff"`
	// Replicas is every serve replica of a shared store that status can
	// see (see ReadReplicas); empty on a directory store.
	Replicas []Replica `json:"replicas"`
}

// ServeBackoff is the back-off count of the serve st describes, when it
// runs and has counted (nil otherwise): a count left by an earlier serve is
// not its.
func ServeBackoff(ctx context.Context, s state.Store, st *Status) (*Backoff, error) {
	if !st.ServeRunning {
		return nil, nil
	}
	file := BackoffFile
	if st.Replica != "" {
		file = ReplicaBackoffFile(st.Replica)
	}
	b, pid, err := ReadBackoff(ctx, s, file)
	if err != nil || b == nil || pid != st.PID {
		return nil, err
	}
	return b, nil
}
