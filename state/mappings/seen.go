package mappings

import (
	"context"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// Seen gives the identity of mapping id's stored file (CertFileName,
// KeyFileName or MetaFileName) as a walk of the state directory saw it: a
// regular file's, from lstat or fstatat. ok is false when the walk did not
// see one, and the file is then stat'ed.
type Seen func(id, file string) (state.FileID, bool)

// EachSeen is Each over every listener's mappings with the identities of
// their files taken from seen rather than one stat each: doctor has walked
// the whole state directory (its file modes) just before, and 100k stats
// more cost a quarter of a second. An identity seen earlier than now is as
// good as a stat for the memo: a value is used only for the file it was
// derived from, and a file read again is described as read.
func EachSeen(ctx context.Context, s state.Store, cfg *state.Config, now time.Time, seen Seen, fn func(Info) error) error {
	sums := NewSummaries(s)
	sums.seen = seen
	defer sums.Save()
	return each(ctx, sums, cfg, "", now, fn)
}
