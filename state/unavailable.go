package state

import (
	"context"
	"io/fs"
)

// Unavailable is a store that could not be opened (a shared store whose
// endpoints did not answer): every method returns err, so that a command
// fails at its first read with the one sentence that says why, and one
// that never reads the state (version, completion) does not fail at all.
func Unavailable(err error) Store { return unavailable{err} }

type unavailable struct{ err error }

func (u unavailable) Read(context.Context, string) ([]byte, error)             { return nil, u.err }
func (u unavailable) Stat(context.Context, string) (fs.FileInfo, error)        { return nil, u.err }
func (u unavailable) List(context.Context, string) ([]string, error)           { return nil, u.err }
func (u unavailable) Write(context.Context, string, []byte, fs.FileMode) error { return u.err }
func (u unavailable) Delete(context.Context, string) error                     { return u.err }
func (u unavailable) Apply(context.Context, Change) error                      { return u.err }
func (u unavailable) Lock(context.Context, string) (func() error, error)       { return nil, u.err }
func (u unavailable) Revision(context.Context) (string, error)                 { return "", u.err }

func (u unavailable) Replace(context.Context, func(Staging) error, ReplaceOptions) (*Replaced, error) {
	return nil, u.err
}

// Watch and WatchChanges have nothing to tell: their channels are closed.
func (u unavailable) Watch(ctx context.Context) <-chan struct{} { return u.WatchChanges(ctx).C }

func (u unavailable) WatchChanges(context.Context) *Feed {
	f := NewFeed(false)
	f.Close()
	return f
}
