package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	legoacme "github.com/go-acme/lego/v4/acme"
	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/text"
)

// directoryTimeout bounds the fetch of an ACME directory: it runs before
// a command takes the state lock and must not keep it waiting long.
const directoryTimeout = 10 * time.Second

// maxDirectory caps the directory document read (real ones are < 2 KiB).
const maxDirectory = 256 << 10

// DirectoryMeta is what an ACME directory's "meta" says that p2ptls uses.
type DirectoryMeta struct {
	// URL is the directory fetched.
	URL string `json:"url"`
	// Profiles are the advertised profile names and descriptions
	// (draft-ietf-acme-profiles); empty when the server offers none.
	Profiles map[string]string `json:"profiles"`
	// CAAIdentities are the issuer domain names the CA recognises in CAA
	// issue/issuewild records (RFC 8555 section 7.1.1).
	CAAIdentities []string `json:"caa_identities"`
}

// ProfileNames returns the advertised profile names, sorted.
func (d *DirectoryMeta) ProfileNames() []string {
	names := make([]string, 0, len(d.Profiles))
	for n := range d.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// FetchDirectory reads the directory of acct's ACME server, trusting the
// system roots plus the account's CA file, as issuance does. It takes at
// most directoryTimeout and ends with ctx. An unreachable server or a
// document that is not a directory is a failure (exit 1).
func FetchDirectory(ctx context.Context, acct *Account) (*DirectoryMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if acct.caPEM != nil {
		pool.AppendCertsFromPEM(acct.caPEM)
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: directoryTimeout,
	}
	defer tr.CloseIdleConnections()
	hint := "check the directory URL, the account's CA file and the network"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, acct.Directory, nil)
	if err != nil {
		return nil, fault.Failf(hint, "read the ACME directory %s: %v", acct.Directory, err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fault.Failf(hint, "read the ACME directory %s: %s", acct.Directory, text.OneLine(err.Error()))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDirectory+1))
	if err != nil {
		return nil, fault.Failf(hint, "read the ACME directory %s: %s", acct.Directory, text.OneLine(err.Error()))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fault.Failf(hint, "read the ACME directory %s: %s", acct.Directory, resp.Status)
	}
	if len(body) > maxDirectory {
		return nil, fault.Failf(hint, "the ACME directory %s is larger than %d KiB", acct.Directory, maxDirectory>>10)
	}
	var dir legoacme.Directory
	if err := json.Unmarshal(body, &dir); err != nil || dir.NewOrderURL == "" {
		why := "it has no newOrder URL"
		if err != nil {
			why = err.Error()
		}
		return nil, fault.Failf(hint, "%s is not an ACME directory: %s", acct.Directory, text.OneLine(why))
	}
	return &DirectoryMeta{URL: acct.Directory, Profiles: dir.Meta.Profiles, CAAIdentities: dir.Meta.CaaIdentities}, nil
}

// issuingDirectory is p2ptls.toml's acme.directory, read without loading
// (and validating) every mapping record: a command that checks a profile
// should not pay for the whole state before it takes the lock.
func issuingDirectory(ctx context.Context, s state.Reader) (string, error) {
	b, err := s.Read(ctx, state.ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var c struct {
		ACME struct {
			Directory string `toml:"directory"`
		} `toml:"acme"`
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("read %s: %w", state.ConfigFile, err)
	}
	return c.ACME.Directory, nil
}

// ProfileSource reads the profiles the issuing account's ACME server
// offers, for mappings.AddChecked and ImportChecked. Without an account,
// or when the server cannot be reached, the offer is Unchecked with the
// reason.
func ProfileSource(s state.Store) mappings.ProfileSource {
	return func(ctx context.Context) mappings.ProfileOffer {
		dir, err := issuingDirectory(ctx, s)
		if err != nil {
			return mappings.ProfileOffer{Unchecked: text.OneLine(err.Error())}
		}
		if dir == "" {
			return mappings.ProfileOffer{Unchecked: "there is no ACME account yet"}
		}
		acct, err := LoadAccount(ctx, s, dir)
		if err != nil {
			return mappings.ProfileOffer{Directory: dir, Unchecked: text.OneLine(err.Error())}
		}
		meta, err := FetchDirectory(ctx, acct)
		if err != nil {
			return mappings.ProfileOffer{Directory: dir, Unchecked: text.OneLine(err.Error())}
		}
		return mappings.ProfileOffer{Directory: dir, Names: meta.ProfileNames(), Descriptions: meta.Profiles}
	}
}

// profileRefused makes an order the CA refused over the mapping's profile
// (a profile it dropped after the mapping was added) say so, with the fix,
// in the one line recorded as last_error; other errors are returned as
// they are. acct's directory is read again to list what it offers now.
func profileRefused(ctx context.Context, acct *Account, m state.Mapping, err error) error {
	// The problem type (":invalidProfile") is in lego's error text; an
	// older server may only say "profile" in the detail.
	if m.Profile == "" || !strings.Contains(strings.ToLower(err.Error()), "profile") {
		return err
	}
	offers := ""
	if meta, derr := FetchDirectory(ctx, acct); derr == nil {
		offers = " (it offers " + strings.Join(meta.ProfileNames(), ", ") + ")"
		if len(meta.Profiles) == 0 {
			offers = " (it offers none)"
		}
	}
	return &profileError{err: err, line: fmt.Sprintf("the ACME server refused the profile %q of mapping %s%s: remove the mapping and add it again with 'p2ptls mapping add … --profile NAME' (another profile, or none)",
		m.Profile, m.ID, offers)}
}

// profileError is an order refused over the mapping's profile: its text is
// the line to record (last_error), the server's own words stay in the
// error it wraps (last_error_detail).
type profileError struct {
	line string
	err  error
}

func (e *profileError) Error() string { return e.line }
func (e *profileError) Unwrap() error { return e.err }
