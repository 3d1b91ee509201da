package state

import (
	"os"
	"time"
)

// FileIDOf is the identity of the file fi describes (from os.Lstat or a
// directory walk), for a memo keyed by more than one file: ok is false
// where the platform gives none.
func FileIDOf(fi os.FileInfo) (FileID, bool) { return fileIDOf(fi) }

// Racy reports whether a file of this identity changed too recently, as of
// now, to be trusted by its identity alone later (see racyWindow): a memo
// value derived from it must not be kept.
func (id FileID) Racy(now time.Time) bool { return id.racy(now) }
