package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sync"
	"syscall"
)

// Claimer is a store that hands out named try-locks, held while one
// process works on one thing outside the state lock (an ACME order for one
// mapping): never two holders of one name at once, in this process or in
// any other. A holder that dies frees its claims. It is an interface of
// its own, beside Store, so that a change (Tx) and test stores need not
// implement it; a store without it gets claims that hold within the
// process only (ClaimLocal).
type Claimer interface {
	// TryClaim takes the claim name if no one holds it, without waiting:
	// ok is false when another holds it. release frees it.
	TryClaim(ctx context.Context, name string) (release func(), ok bool, err error)
}

// ClaimsDir holds the claim files of a directory store: runtime, like the
// rest of run/, never backed up or watched.
const ClaimsDir = RunDir + "/claims"

var _ Claimer = (*Dir)(nil)

// claimName is a name safe for a file or a key as it is.
var claimName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

// ClaimKey is the name a store keeps claim name under: the name itself
// when it is safe for a file or a key, else a digest of it.
func ClaimKey(name string) string {
	if claimName.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// TryClaim takes the claim name as an flock on run/claims/NAME.lock. The
// kernel frees an flock when its holder dies, and two opens of the file
// conflict even in one process, so goroutines claim like processes do.
// The file is removed as the claim is released (before unlocking, like
// the state lock: a process that locked the removed file sees it is no
// longer the named one and tries again), so that claims leave nothing.
func (d *Dir) TryClaim(ctx context.Context, name string) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	name = ClaimKey(name)
	dir := filepath.Join(d.root, filepath.FromSlash(ClaimsDir))
	p := filepath.Join(dir, name+".lock")
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("claim %s: %w", name, err)
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, SecretMode)
		if errors.Is(err, os.ErrNotExist) && attempt < 100 {
			continue // the directory went away with the last claim's file
		}
		if err != nil {
			return nil, false, fmt.Errorf("claim %s: %w", name, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("claim %s: %w", name, err)
		}
		locked, err1 := f.Stat()
		current, err2 := os.Stat(p)
		if err1 != nil || err2 != nil || !os.SameFile(locked, current) {
			_ = f.Close() // its holder removed it as it released: again
			if attempt < 100 {
				continue
			}
			return nil, false, fmt.Errorf("claim %s: the claim file keeps being replaced", name)
		}
		var once sync.Once
		return func() {
			once.Do(func() {
				_ = os.Remove(p)
				_ = f.Close()
			})
		}, true, nil
	}
}

// localClaims are the claims of stores that are no Claimer, by store and
// name.
var localClaims struct {
	mu   sync.Mutex
	held map[any]map[string]bool
}

// ClaimLocal takes claim name on s: through s when it is a Claimer, else
// within this process only (a test store, which no other process sees).
func ClaimLocal(ctx context.Context, s Store, name string) (func(), bool, error) {
	if c, ok := s.(Claimer); ok {
		return c.TryClaim(ctx, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var key any = s
	if !reflect.TypeOf(s).Comparable() {
		key = reflect.TypeOf(s).String() // a value store: one per type
	}
	localClaims.mu.Lock()
	defer localClaims.mu.Unlock()
	if localClaims.held == nil {
		localClaims.held = map[any]map[string]bool{}
	}
	names := localClaims.held[key]
	if names[name] {
		return nil, false, nil
	}
	if names == nil {
		names = map[string]bool{}
		localClaims.held[key] = names
	}
	names[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			localClaims.mu.Lock()
			defer localClaims.mu.Unlock()
			delete(names, name)
			if len(names) == 0 {
				delete(localClaims.held, key)
			}
		})
	}, true, nil
}
