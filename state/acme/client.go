package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/lego"
	legolog "github.com/go-acme/lego/v4/log"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/text"
)

// keyTypes maps the mapping's key_type to lego's.
var keyTypes = map[string]certcrypto.KeyType{
	"":        certcrypto.EC256,
	"ec256":   certcrypto.EC256,
	"ec384":   certcrypto.EC384,
	"rsa2048": certcrypto.RSA2048,
	"rsa4096": certcrypto.RSA4096,
}

// userAgent names p2ptls to ACME servers.
const userAgent = "p2ptls"

// legoLogOnce routes lego's own log lines, which it would print to stderr,
// to the default logger at debug level.
var legoLogOnce sync.Once

// newClient is a lego client for acct that trusts the system roots plus
// the account's CA file, and no other environment (LEGO_CA_CERTIFICATES
// is deliberately not consulted). lego takes no context; its requests are
// bound to ctx by the transport, so that a signal or serve's shutdown ends
// an order at once instead of after the HTTP timeout.
func newClient(ctx context.Context, acct *Account, keyType string) (*lego.Client, error) {
	legoLogOnce.Do(func() { legolog.Logger = slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug) })
	kt, ok := keyTypes[keyType]
	if !ok {
		return nil, fault.Invalidf(`use ec256, ec384, rsa2048 or rsa4096`, "unknown key type %q", keyType)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if acct.caPEM != nil {
		pool.AppendCertsFromPEM(acct.caPEM)
	}
	cfg := lego.NewConfig(acct)
	cfg.CADirURL = acct.Directory
	cfg.UserAgent = userAgent
	cfg.Certificate.KeyType = kt
	cfg.HTTPClient = &http.Client{
		Timeout: 2 * time.Minute,
		Transport: ctxTransport{ctx: ctx, base: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 15 * time.Second,
		}},
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fault.Failf("check the directory URL, --ca-file and the network", "reach the ACME server %s: %s", acct.Directory, text.OneLine(err.Error()))
	}
	return client, nil
}

// ctxTransport cancels every request it carries when ctx is done, besides
// the request's own context, until its body is closed.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	done := func() { stop(); cancel() }
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		done()
		return nil, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

// doneBody runs done when the body is closed.
type doneBody struct {
	io.ReadCloser
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}
