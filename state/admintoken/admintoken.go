// Package admintoken keeps the Bearer tokens of the management API. Only a
// hash of each token is stored: the token itself is shown once, by Create,
// and cannot be recovered from the state.
package admintoken

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// File holds the token hashes, relative to the state root.
const File = "secrets/admin-tokens.toml"

// Prefix starts every token, so that a leaked one is recognisable (secret
// scanners, logs) as a p2ptls admin token.
const Prefix = "p2ptls_"

// tokenBytes is the entropy of a token: 256 bits.
const tokenBytes = 32

// fileHeader is written at the top of every saved File.
const fileHeader = "# p2ptls admin tokens for the management API. Only SHA-256 hashes are kept;\n" +
	"# a token is shown once, when it is created. Remove an entry to revoke it.\n\n"

// Info describes a token without revealing anything about its value.
type Info struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// tokenFile is the content of File.
type tokenFile struct {
	Tokens []entry `toml:"tokens,omitempty"`
}

// entry is one token. A plain SHA-256 is enough, where a password would need
// a slow KDF: tokens are 256-bit random values, so there is nothing to
// guess by brute force and a fast hash keeps Verify cheap on every request.
type entry struct {
	Name      string    `toml:"name"`
	SHA256    string    `toml:"sha256"`
	CreatedAt time.Time `toml:"created_at"`
}

// Create adds a token called name and returns it; the caller shows it once,
// since only its hash is kept. now is the creation time recorded, in UTC to
// the second.
func Create(ctx context.Context, s state.Store, name string, now time.Time) (token string, err error) {
	if err := hostname.ValidateName("admin token", name); err != nil {
		return "", fault.AsInvalid(err, "")
	}
	err = state.Update(ctx, s, "admin token create "+name, func(tx *state.Tx) error {
		// Read from the store itself, so that a problem names the file's path.
		f, err := load(ctx, s)
		if err != nil {
			return fmt.Errorf("create admin token %q: %w", name, err)
		}
		if f.index(name) >= 0 {
			return fault.Failf(fmt.Sprintf("revoke it first with 'p2ptls admin token revoke %s', or choose another name", name),
				"admin token %q already exists", name)
		}
		var raw [tokenBytes]byte
		rand.Read(raw[:]) // never fails: since Go 1.24 it crashes the program instead
		token = Prefix + base64.RawURLEncoding.EncodeToString(raw[:])
		sum := sha256.Sum256([]byte(token))
		f.Tokens = append(f.Tokens, entry{Name: name, SHA256: hex.EncodeToString(sum[:]), CreatedAt: now.UTC().Truncate(time.Second)})
		return save(ctx, tx, f)
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// List returns the tokens sorted by name.
func List(ctx context.Context, s state.Store) ([]Info, error) {
	f, err := load(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("list admin tokens: %w", err)
	}
	infos := make([]Info, 0, len(f.Tokens)) // empty, not nil: JSON output shows []
	for _, e := range f.Tokens {
		infos = append(infos, Info{Name: e.Name, CreatedAt: e.CreatedAt})
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

// Revoke removes the token called name.
func Revoke(ctx context.Context, s state.Store, name string) (err error) {
	return state.Update(ctx, s, "admin token revoke "+name, func(tx *state.Tx) error {
		f, err := load(ctx, s)
		if err != nil {
			return fmt.Errorf("revoke admin token %q: %w", name, err)
		}
		i := f.index(name)
		if i < 0 {
			return fault.NotFoundf("see 'p2ptls admin token list'", "admin token %q does not exist", name)
		}
		f.Tokens = slices.Delete(f.Tokens, i, i+1)
		return save(ctx, tx, f)
	})
}

// Verify reports whether token is a current admin token, and its name. It
// reads File on every call so that a revoke by another process applies at
// once. An empty token or a state without tokens is simply not ok; err is
// set only when File cannot be read, for the caller to log, and ok is then
// false.
func Verify(ctx context.Context, s state.Store, token string) (name string, ok bool, err error) {
	if token == "" {
		return "", false, nil
	}
	f, err := load(ctx, s)
	if err != nil {
		return "", false, fmt.Errorf("verify admin token: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	// Compare against every entry without branching on the result, so the
	// time taken says neither which entry matched nor whether one did.
	match := -1
	for i, e := range f.Tokens {
		stored, _ := hex.DecodeString(e.SHA256) // checked by load
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], stored), i, match)
	}
	if match < 0 {
		return "", false, nil
	}
	return f.Tokens[match].Name, true, nil
}

// index returns the position of the entry called name, or -1.
func (f *tokenFile) index(name string) int {
	return slices.IndexFunc(f.Tokens, func(e entry) bool { return e.Name == name })
}

// load reads and checks File; a missing file has no tokens. Anything wrong
// with the content is an error naming the file, so that Create and Revoke
// never overwrite a file they could not fully read.
func load(ctx context.Context, s state.Store) (*tokenFile, error) {
	b, err := s.Read(ctx, File)
	if errors.Is(err, fs.ErrNotExist) {
		return &tokenFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", state.Locate(s, File), err)
	}
	var f tokenFile
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, corrupt(s, decodeProblem(err))
	}
	for i, e := range f.Tokens {
		if problem := e.check(); problem != "" {
			return nil, corrupt(s, fmt.Sprintf("token %d: %s", i+1, problem))
		}
		if f.index(e.Name) < i {
			return nil, corrupt(s, fmt.Sprintf("token %d: name %q is used twice", i+1, e.Name))
		}
	}
	return &f, nil
}

// check returns what is wrong with a decoded entry, or "". The hash itself
// is not quoted: it is not needed to find the entry.
func (e *entry) check() string {
	if err := hostname.ValidateName("admin token", e.Name); err != nil {
		return err.Error()
	}
	if d, err := hex.DecodeString(e.SHA256); err != nil || len(d) != sha256.Size {
		return fmt.Sprintf("admin token %q: sha256 is not %d hexadecimal digits", e.Name, 2*sha256.Size)
	}
	if e.CreatedAt.IsZero() {
		return fmt.Sprintf("admin token %q: created_at is missing", e.Name)
	}
	return ""
}

// decodeProblem locates a go-toml error by line without quoting the file,
// whose lines hold hashes.
func decodeProblem(err error) string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := &strict.Errors[0]
		row, _ := e.Position()
		return fmt.Sprintf("line %d: unknown field %q", row, strings.Join(e.Key(), "."))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Sprintf("line %d, column %d: %s", row, col, de.Error())
	}
	return err.Error()
}

// corrupt is the error for a File p2ptls cannot use.
func corrupt(s state.Store, problem string) error {
	p := state.Locate(s, File)
	return fault.Failf(fmt.Sprintf("fix %s by hand or remove it (removing it revokes every admin token); p2ptls will not overwrite it", p),
		"%s: %s", p, problem)
}

// save writes f, readable by the owner only, into the change tx.
func save(ctx context.Context, tx *state.Tx, f *tokenFile) error {
	b, err := toml.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode %s: %w", File, err)
	}
	return tx.Write(ctx, File, append([]byte(fileHeader), b...), state.SecretMode)
}
