package management

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
)

// reloadInterval bounds how long a rotated certificate in the operator's
// files (mode provided) waits to be served. Those files lie outside the
// state, so no change of the state announces them; a pair kept in the
// state (mode auto) follows the store's change signal instead.
const reloadInterval = time.Second

// certSource reads a certificate chain and key, as PEM, from wherever they
// live (the state directory or the operator's files).
type certSource func() (certPEM, keyPEM []byte, err error)

// liveCert serves the current key pair and swaps in a new one when its
// source changes. The operator's files are read each second: cheap, and,
// unlike watching inodes, it sees atomic renames and edits in place alike.
type liveCert struct {
	source certSource
	// changes, for a pair kept in the state, subscribes to the store's
	// change signal; nil for files outside it, which are polled.
	changes         func(context.Context) <-chan struct{}
	cert            atomic.Pointer[tls.Certificate]
	lastCert, lastK []byte
	log             *slog.Logger
}

func newLiveCert(source certSource, changes func(context.Context) <-chan struct{}, log *slog.Logger) (*liveCert, error) {
	lc := &liveCert{source: source, changes: changes, log: log}
	certPEM, keyPEM, err := source()
	if err != nil {
		return nil, err
	}
	if err := lc.load(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return lc, nil
}

func (lc *liveCert) load(certPEM, keyPEM []byte) error {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	lc.cert.Store(&c)
	lc.lastCert, lc.lastK = certPEM, keyPEM
	return nil
}

// getCertificate is the tls.Config hook.
func (lc *liveCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return lc.cert.Load(), nil
}

// watch reloads on change until ctx ends. A pair that does not load (for
// instance read between the writes of a new key and its certificate) is
// logged and the previous one keeps serving.
func (lc *liveCert) watch(ctx context.Context) {
	var lastErr string
	if lc.changes != nil {
		changes := lc.changes(ctx)
		lc.check(&lastErr)  // what changed between loading and subscribing
		for range changes { // closed when ctx ends
			lc.check(&lastErr)
		}
		return
	}
	t := time.NewTicker(reloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lc.check(&lastErr)
	}
}

// check reloads the pair once if it changed. A panic in it is logged and
// counted, and the previous pair keeps serving.
func (lc *liveCert) check(lastErr *string) {
	defer edge.Recover(lc.log, "management certificate reload")
	certPEM, keyPEM, err := lc.source()
	if err == nil && bytes.Equal(certPEM, lc.lastCert) && bytes.Equal(keyPEM, lc.lastK) {
		return
	}
	if err == nil {
		err = lc.load(certPEM, keyPEM)
	}
	if err != nil {
		if err.Error() != *lastErr {
			lc.log.Warn("management certificate changed but does not load; still serving the previous one", "err", err)
			*lastErr = err.Error()
		}
		return
	}
	*lastErr = ""
	lc.log.Info("management certificate reloaded")
}
