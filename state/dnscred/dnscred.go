// Package dnscred keeps the DNS provider credentials that ACME DNS-01
// validation uses: Cloudflare API tokens.
//
// A credential has two halves. Its reference — name, provider, enabled,
// api_base_url — is an entry of p2ptls.toml (state.DNSCredential), where
// mappings name it. Its token is a file of its own, never in p2ptls.toml:
//
//	$CONFIG_DIR/secrets/           0700
//	└── dns/                       0700 (TokenDir)
//	    └── <name>.token           0600 (TokenFile): the API token, one line
//
// The token is read from a file or an environment variable by the command
// line, never from argv, and is never printed: listings show its last four
// characters (token_hint). Credential, the one type that carries it, does
// not print it either.
package dnscred

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// TokenDir holds the token files, relative to the state root.
const TokenDir = "secrets/dns"

// tokenSuffix ends every token file name.
const tokenSuffix = ".token"

// TokenFile is the store name of credential name's token file. Names are
// checked by hostname.ValidateName, so they never contain a slash or "..".
func TokenFile(name string) string { return TokenDir + "/" + name + tokenSuffix }

// hintLen is how many trailing characters of a token a listing shows.
const hintLen = 4

// minHintedLen is the shortest token whose last characters are shown: the
// hint must never give away most of a token. Real Cloudflare tokens have 40
// characters.
const minHintedLen = 3 * hintLen

// maxTokenLen bounds a token; Cloudflare's have 40 characters.
const maxTokenLen = 4096

// listCmd is where a "does not exist" error sends the user.
const listCmd = "see 'p2ptls dns-credential list'"

// Info describes a credential without its token; its JSON fields are the
// ones of "dns-credential list".
type Info struct {
	Name       string   `json:"name"`
	Provider   string   `json:"provider"`
	Enabled    bool     `json:"enabled"`
	TokenHint  string   `json:"token_hint"` // the token's last 4 characters; "" for a short token
	APIBaseURL string   `json:"api_base_url"`
	UsedBy     []string `json:"used_by"` // ids of the mappings that name it; never nil
	// Problem says what is wrong with the token file, when something is; the
	// credential cannot be used until it is fixed.
	Problem string `json:"problem,omitempty"`
}

// Credential is what ACME issuance needs to use a credential. It carries the
// token, so it never prints it: fmt, slog and encoding/json show the name
// only.
type Credential struct {
	Name       string
	Provider   string
	Token      string `json:"-"`
	APIBaseURL string // as configured; "" means the provider's default
}

// String names the credential; it is what every fmt verb prints.
func (c Credential) String() string { return fmt.Sprintf("DNS credential %q", c.Name) }

// Format makes %v, %+v, %#v and %s print String, never the token.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue keeps the token out of structured logs.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.String("provider", c.Provider))
}

// BaseURL is the API endpoint the credential is used against.
func (c Credential) BaseURL() string {
	if c.APIBaseURL != "" {
		return c.APIBaseURL
	}
	return DefaultCloudflareBaseURL
}

// NormalizeToken trims surrounding whitespace (a trailing newline from a
// file or "echo") and checks what is left: not empty, and nothing a
// Bearer header cannot carry. Errors are bad input and never quote the token.
func NormalizeToken(token string) (string, error) {
	t := strings.TrimSpace(token)
	const hint = "give only the token: one line without spaces, as the Cloudflare dashboard shows it"
	switch {
	case t == "":
		return "", fault.Invalidf("give the token in the file or the environment variable", "the API token is empty")
	case len(t) > maxTokenLen:
		return "", fault.Invalidf(hint, "the API token is %d bytes long, which is no API token", len(t))
	case strings.ContainsFunc(t, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }):
		return "", fault.Invalidf(hint, "the API token contains a space or a line break")
	case strings.ContainsFunc(t, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return "", fault.Invalidf(hint, "the API token contains a character that is not printable ASCII")
	}
	return t, nil
}

// tokenHint is what a listing shows of token: its last 4 characters and
// nothing else (DESIGN.md); tables and the UI put "…" in front.
func tokenHint(token string) string {
	if len(token) < minHintedLen {
		return ""
	}
	return token[len(token)-hintLen:]
}

// normalize checks c on its own, before any lock is taken: name, provider
// (lower-cased) and api_base_url, with the same rules p2ptls.toml is held to.
func normalize(c state.DNSCredential) (state.DNSCredential, error) {
	if err := hostname.ValidateName("DNS credential", c.Name); err != nil {
		return c, fault.AsInvalid(err, "")
	}
	c.Provider = strings.ToLower(strings.TrimSpace(c.Provider))
	if c.Provider != state.ProviderCloudflare {
		return c, fault.Invalidf("use --provider cloudflare", "unknown DNS provider %q; p2ptls supports cloudflare", c.Provider)
	}
	c.APIBaseURL = strings.TrimSpace(c.APIBaseURL)
	one := state.Config{SchemaVersion: state.SchemaVersion, DNSCredentials: []state.DNSCredential{c}}
	if err := one.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Add saves a new credential: c's reference in p2ptls.toml and its token
// in its own file, in one change. c.Enabled is ignored: a new credential is
// enabled.
func Add(ctx context.Context, s state.Store, c state.DNSCredential, token string) error {
	return put(ctx, s, c, token, false)
}

// Replace gives the existing credential c.Name a new token, for rotating a
// token while mappings use it. Its enabled state is kept, and so is its
// api_base_url unless c sets one.
func Replace(ctx context.Context, s state.Store, c state.DNSCredential, token string) error {
	return put(ctx, s, c, token, true)
}

func put(ctx context.Context, s state.Store, c state.DNSCredential, token string, replace bool) (err error) {
	// Bad input never waits for the lock.
	c, err = normalize(c)
	if err != nil {
		return err
	}
	if token, err = NormalizeToken(token); err != nil {
		return err
	}
	verb := "add"
	if replace {
		verb = "replace"
	}
	return state.Update(ctx, s, "dns-credential "+verb+" "+c.Name, func(tx *state.Tx) error {
		cfg := tx.Config
		i := index(cfg, c.Name)
		switch {
		case replace && i < 0:
			return notFound(c.Name)
		case replace:
			c.Enabled = cfg.DNSCredentials[i].Enabled
			if c.APIBaseURL == "" {
				c.APIBaseURL = cfg.DNSCredentials[i].APIBaseURL
			}
			cfg.DNSCredentials[i] = c
		case i >= 0:
			return fault.Failf(fmt.Sprintf("choose another name, give it a new token with 'p2ptls dns-credential add %s --replace …', or remove it first with 'p2ptls dns-credential remove %s'", c.Name, c.Name),
				"DNS credential %q already exists", c.Name)
		default:
			c.Enabled = true
			cfg.DNSCredentials = append(cfg.DNSCredentials, c)
		}
		// A token file may be there already: the credential's own
		// (replace), or one an earlier remove left behind; it is replaced.
		return tx.Write(ctx, TokenFile(c.Name), []byte(token+"\n"), state.SecretMode)
	})
}

// List describes every credential of cfg, sorted by name. A credential
// whose token file is missing or unreadable is listed with a Problem.
func List(ctx context.Context, s state.Store, cfg *state.Config) ([]Info, error) {
	used := usage(cfg)
	infos := make([]Info, 0, len(cfg.DNSCredentials)) // [] in JSON, never null
	for _, c := range cfg.DNSCredentials {
		infos = append(infos, describe(ctx, s, c, used[c.Name]))
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

// Show describes the credential called name.
func Show(ctx context.Context, s state.Store, cfg *state.Config, name string) (Info, error) {
	i := index(cfg, name)
	if i < 0 {
		return Info{}, notFound(name)
	}
	return describe(ctx, s, cfg.DNSCredentials[i], usage(cfg)[name]), nil
}

// describe builds the Info of c; usedBy may be nil.
func describe(ctx context.Context, s state.Store, c state.DNSCredential, usedBy []string) Info {
	info := Info{Name: c.Name, Provider: c.Provider, Enabled: c.Enabled, APIBaseURL: c.APIBaseURL, UsedBy: usedBy}
	if info.UsedBy == nil {
		info.UsedBy = []string{}
	}
	token, err := readToken(ctx, s, c.Name)
	if err != nil {
		info.Problem = err.Error()
	} else {
		info.TokenHint = tokenHint(token)
	}
	return info
}

// usage maps each credential name to the ids of the mappings that name it,
// in one pass over the mappings.
func usage(cfg *state.Config) map[string][]string {
	used := map[string][]string{}
	for _, m := range cfg.Mappings {
		if m.DNSCredential != "" {
			used[m.DNSCredential] = append(used[m.DNSCredential], m.ID)
		}
	}
	return used
}

// SetEnabled enables or disables the credential called name. A disabled
// credential stays configured, but issuance refuses to use it (Lookup). It
// reports whether anything changed; nothing is written when not.
func SetEnabled(ctx context.Context, s state.Store, name string, enabled bool) (changed bool, err error) {
	verb := "disable"
	if enabled {
		verb = "enable"
	}
	err = state.Update(ctx, s, "dns-credential "+verb+" "+name, func(tx *state.Tx) error {
		i := index(tx.Config, name)
		if i < 0 {
			return notFound(name)
		}
		if tx.Config.DNSCredentials[i].Enabled == enabled {
			return errUnchanged
		}
		tx.Config.DNSCredentials[i].Enabled = enabled
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return false, nil
	}
	return err == nil, err
}

// errUnchanged ends a change that has nothing to do, so that nothing is
// written.
var errUnchanged = errors.New("nothing to change")

// Remove removes the credential called name and its token file, in one
// change, and returns what it was. It refuses while a mapping names it.
func Remove(ctx context.Context, s state.Store, name string) (removed Info, err error) {
	err = state.Update(ctx, s, "dns-credential remove "+name, func(tx *state.Tx) error {
		cfg := tx.Config
		i := index(cfg, name)
		if i < 0 {
			return notFound(name)
		}
		if used := usage(cfg)[name]; len(used) > 0 {
			return fault.Failf(fmt.Sprintf("remove those mappings first ('p2ptls mapping remove ID'), or disable the credential with 'p2ptls dns-credential disable %s'", name),
				"DNS credential %q is used by %d mapping(s): %s", name, len(used), strings.Join(used, ", "))
		}
		// Described from the store itself, so that a problem names the
		// token file's path.
		removed = describe(ctx, s, cfg.DNSCredentials[i], nil)
		cfg.DNSCredentials = slices.Delete(cfg.DNSCredentials, i, i+1)
		return tx.Delete(ctx, TokenFile(name))
	})
	return removed, err
}

// Lookup returns the credential called name for ACME issuance. A name that
// does not exist is bad input (the mapping or request names it); a disabled
// credential and a missing token file are failures whose hints say how to
// fix them.
func Lookup(ctx context.Context, s state.Store, cfg *state.Config, name string) (Credential, error) {
	i := index(cfg, name)
	if i < 0 {
		return Credential{}, fault.Invalidf("add it with 'p2ptls dns-credential add', or "+listCmd+" for the existing ones",
			"DNS credential %q does not exist", name)
	}
	if !cfg.DNSCredentials[i].Enabled {
		return Credential{}, fault.Failf(fmt.Sprintf("enable it with 'p2ptls dns-credential enable %s'", name),
			"DNS credential %q is disabled", name)
	}
	return load(ctx, s, cfg.DNSCredentials[i])
}

// Get returns the credential called name whether or not it is enabled, for
// "dns-credential test": a disabled credential can be tested before it is
// enabled again.
func Get(ctx context.Context, s state.Store, cfg *state.Config, name string) (Credential, error) {
	i := index(cfg, name)
	if i < 0 {
		return Credential{}, notFound(name)
	}
	return load(ctx, s, cfg.DNSCredentials[i])
}

// load reads the token of c.
func load(ctx context.Context, s state.Store, c state.DNSCredential) (Credential, error) {
	token, err := readToken(ctx, s, c.Name)
	if err != nil {
		return Credential{}, fault.Failf(fmt.Sprintf("write the token into that file (one line, mode 0600), or give it again with 'p2ptls dns-credential add %s --replace --api-token-file F'", c.Name),
			"DNS credential %q cannot be used: %v", c.Name, err)
	}
	return Credential{Name: c.Name, Provider: c.Provider, Token: token, APIBaseURL: c.APIBaseURL}, nil
}

// readToken reads and checks the token file of credential name. Errors name
// the file and never quote its content.
func readToken(ctx context.Context, s state.Store, name string) (string, error) {
	p := state.Locate(s, TokenFile(name))
	b, err := s.Read(ctx, TokenFile(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("its token file %s is missing", p)
	case err != nil:
		return "", fmt.Errorf("its token file %s cannot be read: %w", p, err)
	}
	token, err := NormalizeToken(string(b))
	if err != nil {
		return "", fmt.Errorf("its token file %s is damaged: %w", p, err)
	}
	return token, nil
}

// index returns the position of the credential called name, or -1.
func index(cfg *state.Config, name string) int {
	return slices.IndexFunc(cfg.DNSCredentials, func(c state.DNSCredential) bool { return c.Name == name })
}

// notFound is the error for a name that names no credential.
func notFound(name string) error {
	return fault.NotFoundf(listCmd+" for the existing ones", "DNS credential %q does not exist", name)
}
