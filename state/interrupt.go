package state

import (
	"context"
	"path"
	"strings"
	"sync"
)

// Commit tracking, for a command line told to stop by a signal: it may exit
// at once unless it is committing a change, from its first write or delete
// under the lock to the unlock. Commits are local writes of milliseconds,
// and every multi-file change is ordered so that a crash between two of its
// writes is harmless; waiting for the commit in progress makes an
// interrupted command leave the state as it was or as fully changed.
//
// Dir.Write and Dir.Delete call noteChange, Lock wraps its unlock func with
// trackCommit, and the command line calls Freeze before it exits.
var commits = struct {
	mu     sync.Mutex
	cond   sync.Cond
	held   map[*Dir]*hold // locks held by this process
	active int            // commits in progress
	done   int            // commits finished
	frozen bool
}{held: map[*Dir]*hold{}}

func init() { commits.cond.L = &commits.mu }

// hold is one lock held.
type hold struct {
	committing bool
	once       sync.Once
	unlock     func() error
	err        error
}

// release runs the unlock func once, whoever asks first: the holder, or
// Freeze for a lock whose holder will never get to it.
func (h *hold) release() error {
	h.once.Do(func() { h.err = h.unlock() })
	return h.err
}

// trackCommit wraps the unlock func of d's lock so that the commit, if
// one started, ends with it.
func trackCommit(d *Dir, unlock func() error) func() error {
	if unlock == nil {
		return nil
	}
	h := &hold{unlock: unlock}
	commits.mu.Lock()
	commits.held[d] = h
	commits.mu.Unlock()
	return func() error {
		err := h.release()
		commits.mu.Lock()
		if commits.held[d] == h {
			delete(commits.held, d)
		}
		if h.committing {
			h.committing = false
			commits.active--
			commits.done++
			commits.cond.Broadcast()
		}
		commits.mu.Unlock()
		return err
	}
}

// noteChange starts a commit at the first change of the desired state
// under d's lock. A change that would start a commit for a caller whose
// context has ended is refused, and once Freeze has run it blocks for good:
// the process is exiting and must not begin one. A commit in progress goes
// on whatever the context says.
func noteChange(ctx context.Context, d *Dir, name string) error {
	if IsRuntime(name) {
		// Runtime status and challenge clean-up are written even by a
		// command that is stopping.
		return nil
	}
	commits.mu.Lock()
	defer commits.mu.Unlock()
	for {
		h := commits.held[d]
		if h != nil && h.committing {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if h == nil {
			return nil
		}
		if !commits.frozen {
			h.committing = true
			commits.active++
			return nil
		}
		commits.cond.Wait()
	}
}

// IsRuntime names what is no part of the desired state, on every store:
// serve's status and in-flight challenges. No revision counts them.
func IsRuntime(name string) bool {
	n := path.Clean(name)
	return strings.HasPrefix(n, RunDir+"/") || strings.HasPrefix(n, ChallengesDir+"/")
}

// Freeze prepares the process to exit in the middle of whatever it does:
// no commit starts any more, the commits in progress are waited for, and
// the locks held without a commit are released, so that the next process
// does not find this one's record in the lock file. It returns how many
// commits this process finished.
func Freeze() int {
	commits.mu.Lock()
	commits.frozen = true
	for commits.active > 0 {
		commits.cond.Wait()
	}
	var idle []*hold
	for _, h := range commits.held {
		idle = append(idle, h)
	}
	done := commits.done
	commits.mu.Unlock()
	for _, h := range idle {
		_ = h.release() // nothing was written under it: nothing to report
	}
	return done
}

// Commit runs fn as one commit: Freeze waits for it to end, and it does not
// start once Freeze has run. It is for changes made other than through
// Dir.Write and Dir.Delete under the lock, such as renaming whole state
// directories.
func Commit(fn func() error) error {
	commits.mu.Lock()
	for commits.frozen {
		commits.cond.Wait()
	}
	commits.active++
	commits.mu.Unlock()
	defer func() {
		commits.mu.Lock()
		commits.active--
		commits.done++
		commits.cond.Broadcast()
		commits.mu.Unlock()
	}()
	return fn()
}
