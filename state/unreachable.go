package state

import "errors"

// ErrUnreachable marks an error of a store that did not answer (a shared
// store whose endpoints are down or cut off), as opposed to one that
// answered no: a reader that keeps a copy of the state serves from it
// while the store is unreachable, and only then.
var ErrUnreachable = errors.New("the store is unreachable")
