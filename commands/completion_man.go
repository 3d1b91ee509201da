package commands

import "io"

// ManPage returns man/p2ptls.1.
func ManPage() (string, error) {
	return NewApp(io.Discard, io.Discard).ToManWithSection(1)
}
