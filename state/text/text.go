// Package text holds how p2ptls writes values for people and for JSON, so
// the CLI, the API and state say them the same way: a message on one line,
// a time as an RFC 3339 UTC stamp, and a list that is [] rather than null.
package text

import (
	"strings"
	"time"
)

// OneLine folds every run of white space in s, newlines included, into one
// space and trims the ends, so a message stays on one line whatever a
// wrapped error contained (lego's problem documents span lines).
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Stamp formats t for messages and output: RFC 3339 in UTC.
func Stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// NonNil returns s, or an empty list when s is nil, so that JSON shows []
// rather than null.
func NonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
