// Package acme obtains and renews the certificates of ACME mappings with
// lego: accounts, the three challenge types, ARI-driven renewal and the
// record of every attempt. Everything runs under the state lock, so cron,
// the CLI and serve's in-process renewal never race.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/registration"
	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// Directory aliases accepted by "acme account register --directory".
var directoryAliases = map[string]string{
	"letsencrypt":         lego.LEDirectoryProduction,
	"letsencrypt-staging": lego.LEDirectoryStaging,
}

// AccountsDir holds one directory per ACME server:
//
//	acme/accounts/<host>-<hash>/account.toml   email, directory, registration URI
//	acme/accounts/<host>-<hash>/key.pem        the account key (0600)
//	acme/accounts/<host>-<hash>/ca.pem         --ca-file, copied: trusted for this server only
const AccountsDir = "acme/accounts"

// Account is a registered ACME account.
type Account struct {
	Email        string    `toml:"email" json:"email"`
	Directory    string    `toml:"directory" json:"directory"`
	URI          string    `toml:"uri" json:"uri"`
	RegisteredAt time.Time `toml:"registered_at" json:"registered_at"`
	// Current is true for the account that issues (p2ptls.toml acme.directory).
	Current bool `toml:"-" json:"current"`

	key   crypto.Signer
	caPEM []byte // trusted for Directory besides the system roots
}

// lego's registration.User.
func (a *Account) GetEmail() string                        { return a.Email }
func (a *Account) GetRegistration() *registration.Resource { return &registration.Resource{URI: a.URI} }
func (a *Account) GetPrivateKey() crypto.PrivateKey        { return a.key }

// accountDir names the directory of the account at an ACME server.
func accountDir(directory string) string {
	u, _ := url.Parse(directory)
	sum := sha256.Sum256([]byte(directory))
	host := strings.NewReplacer(":", "_", "[", "", "]", "").Replace(u.Host)
	return AccountsDir + "/" + host + "-" + hex.EncodeToString(sum[:4])
}

// RegisterInput is what "acme account register" asks for.
type RegisterInput struct {
	Email     string
	Directory string // URL or alias
	CAFile    string // trusted for the directory (private ACME servers)
	EABKid    string
	EABHMAC   string // from a file, never argv
	AgreeTOS  bool
}

// ResolveDirectory turns an alias into a URL and checks it.
func ResolveDirectory(d string) (string, error) {
	if d == "" {
		d = "letsencrypt"
	}
	if u, ok := directoryAliases[d]; ok {
		return u, nil
	}
	u, err := url.Parse(d)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fault.Invalidf("give an https:// directory URL, or letsencrypt or letsencrypt-staging",
			"ACME directory %q is not an https URL", d)
	}
	return d, nil
}

// Register creates an account key, registers it and makes it the account
// that issues. An account already registered at that server is refused.
func Register(ctx context.Context, s state.Store, in RegisterInput, now time.Time) (*Account, error) {
	if !in.AgreeTOS {
		return nil, fault.Invalidf("read the ACME server's terms of service and pass --agree-tos", "registering an ACME account needs --agree-tos")
	}
	if _, err := mail.ParseAddress(in.Email); err != nil || strings.ContainsAny(in.Email, "<> ") {
		return nil, fault.Invalidf("give a plain address such as ops@example.com", "%q is not an email address", in.Email)
	}
	dir, err := ResolveDirectory(in.Directory)
	if err != nil {
		return nil, err
	}
	if (in.EABKid == "") != (in.EABHMAC == "") {
		return nil, fault.Invalidf("give both --eab-kid and --eab-hmac-file", "external account binding needs a key id and an HMAC key")
	}
	var caPEM []byte
	if in.CAFile != "" {
		if caPEM, err = loadCAFile(in.CAFile); err != nil {
			return nil, err
		}
	}
	if _, err := s.Read(ctx, accountDir(dir)+"/account.toml"); err == nil {
		return nil, fault.Failf("'p2ptls acme account show' shows it", "an ACME account at %s is already registered", dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	acct := &Account{Email: in.Email, Directory: dir, RegisteredAt: now.UTC().Truncate(time.Second), key: key, caPEM: caPEM}
	client, err := newClient(ctx, acct, "ec256")
	if err != nil {
		return nil, err
	}
	var reg *registration.Resource
	if in.EABKid != "" {
		reg, err = client.Registration.RegisterWithExternalAccountBinding(registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: in.EABKid, HmacEncoded: strings.TrimSpace(in.EABHMAC)})
	} else {
		reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		hint := "check the directory URL, --ca-file and the network"
		if strings.Contains(err.Error(), "externalAccountRequired") {
			hint = "this ACME server requires external account binding: pass --eab-kid and --eab-hmac-file from your CA account"
		}
		return nil, fault.Failf(hint, "register an ACME account at %s: %s", dir, text.OneLine(err.Error()))
	}
	acct.URI = reg.URI
	return acct, saveAccount(ctx, s, acct)
}

func saveAccount(ctx context.Context, s state.Store, acct *Account) error {
	keyPEM, err := pki.EncodeKey(acct.key)
	if err != nil {
		return err
	}
	b, err := toml.Marshal(acct)
	if err != nil {
		return err
	}
	dir := accountDir(acct.Directory)
	return state.Update(ctx, s, "acme account register", func(tx *state.Tx) error {
		if err := tx.Write(ctx, dir+"/key.pem", keyPEM, state.SecretMode); err != nil {
			return err
		}
		if acct.caPEM != nil {
			if err := tx.Write(ctx, dir+"/ca.pem", acct.caPEM, state.PublicMode); err != nil {
				return err
			}
		}
		if err := tx.Write(ctx, dir+"/account.toml", b, state.SecretMode); err != nil {
			return err
		}
		tx.Config.ACME.Directory = acct.Directory
		return nil
	})
}

// LoadAccount reads the account registered at directory.
func LoadAccount(ctx context.Context, s state.Store, directory string) (*Account, error) {
	if directory == "" {
		return nil, fault.Failf("register one with 'p2ptls acme account register --email E --agree-tos'", "there is no ACME account")
	}
	dir := accountDir(directory)
	b, err := s.Read(ctx, dir+"/account.toml")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fault.Failf("register one with 'p2ptls acme account register --directory "+directory+" …'", "there is no ACME account at %s", directory)
	}
	if err != nil {
		return nil, err
	}
	var a Account
	if err := toml.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("read %s/account.toml: %w", dir, err)
	}
	keyPEM, err := s.Read(ctx, dir+"/key.pem")
	if err != nil {
		return nil, fmt.Errorf("read the ACME account key: %w", err)
	}
	if a.key, err = pki.ParseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("read the ACME account key: %w", err)
	}
	if a.caPEM, err = s.Read(ctx, dir+"/ca.pem"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &a, nil
}

// ListAccounts returns every registered account, the issuing one marked.
func ListAccounts(ctx context.Context, s state.Store, cfg *state.Config) ([]Account, error) {
	names, err := s.List(ctx, AccountsDir)
	if err != nil {
		return nil, err
	}
	list := []Account{}
	for _, n := range names {
		b, err := s.Read(ctx, AccountsDir+"/"+n+"/account.toml")
		if err != nil {
			continue // a directory without an account is not one
		}
		var a Account
		if err := toml.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("read %s/%s/account.toml: %w", AccountsDir, n, err)
		}
		a.Current = a.Directory == cfg.ACME.Directory
		list = append(list, a)
	}
	return list, nil
}

// loadCAFile reads a PEM bundle to trust for a private ACME server.
func loadCAFile(file string) ([]byte, error) {
	b, err := userfile.Read(file, userfile.MaxPEM)
	if err != nil {
		return nil, fmt.Errorf("the ACME CA file (--ca-file): %w", err)
	}
	if _, err := pki.ParseCertChain(b); err != nil {
		return nil, fault.Invalidf("point --ca-file at a PEM certificate file", "the ACME CA file %s holds no certificate: %v", file, err)
	}
	return b, nil
}
