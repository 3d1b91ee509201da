// Package fault classifies errors so that the command line can turn any error
// into one sentence, an optional hint and the exit code DESIGN.md fixes, no
// matter how deeply the error was wrapped on its way up.
package fault

import (
	"errors"
	"fmt"
)

// Kind says which exit code an error maps to.
type Kind int

const (
	// Failure is the default: something went wrong (exit 1).
	Failure Kind = iota
	// Invalid is bad input: a flag, a name, a file the user gave (exit 2).
	Invalid
	// Locked means the state directory stayed locked past the timeout (exit 3).
	Locked
	// NotFound is a well-formed request for something the state does not
	// have: a failure on the command line (exit 1), 404 in the API.
	NotFound
)

// Error carries a kind and a hint through wrapping.
type Error struct {
	Kind Kind
	Msg  string
	Hint string
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.Msg == "" && e.Err != nil:
		return e.Err.Error()
	case e.Err != nil:
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalidf reports bad input; hint names the fix and may be empty.
func Invalidf(hint, format string, args ...any) error {
	return &Error{Kind: Invalid, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// Failf reports a failure that is not the input's fault, with a hint.
func Failf(hint, format string, args ...any) error {
	return &Error{Kind: Failure, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// NotFoundf reports that a named thing does not exist; hint says where to
// look for what does.
func NotFoundf(hint, format string, args ...any) error {
	return &Error{Kind: NotFound, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// AsInvalid marks err as bad input, keeping its message.
func AsInvalid(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: Invalid, Err: err, Hint: hint}
}

// KindOf returns the kind of the outermost classified error in err's chain.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return Failure
}

// HintOf returns the first non-empty hint in err's chain.
func HintOf(err error) string {
	for err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			return ""
		}
		if fe.Hint != "" {
			return fe.Hint
		}
		err = fe.Err
	}
	return ""
}
