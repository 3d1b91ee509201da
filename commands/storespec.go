package commands

import (
	"context"
	"net/url"
	"os"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/etcdstore"
	"github.com/p2pstream/p2ptls/state/fault"
)

// schemeEtcd names the etcd store in a store URL
// (etcd://HOST:PORT[,HOST:PORT…]/PREFIX).
const schemeEtcd = "etcd"

// openStore opens what a DIR|URL argument names (store copy's --from and
// --to): a store URL by its scheme, anything else as a state directory,
// resolved like --config-dir (a relative path against the working
// directory). close releases what opening took (a client connection);
// call it once done.
func openStore(ctx context.Context, g *Globals, spec string) (state.Store, func() error, error) {
	if spec == "" {
		return nil, nil, fault.Invalidf("give a state directory or a store URL such as etcd://127.0.0.1:2379/p2ptls", "an empty store was given")
	}
	if scheme, _, ok := strings.Cut(spec, "://"); ok {
		if strings.EqualFold(scheme, schemeEtcd) {
			s, err := etcdstore.OpenURL(ctx, spec, os.Getenv, g.LockTimeout)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		}
		return nil, nil, fault.Invalidf("give a state directory or an etcd://HOST:PORT/PREFIX URL", "unknown store URL scheme %q in %q", scheme, redactURL(spec))
	}
	dir, err := state.ResolveDir(spec, os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	d := state.OpenDir(dir, g.LockTimeout)
	// As before every command: a restore into it cut short is finished
	// first.
	if err := state.SettleSwap(ctx, d); err != nil {
		return nil, nil, err
	}
	return d, func() error { return nil }, nil
}

// redactURL hides a password written into a URL by mistake.
func redactURL(spec string) string {
	if u, err := url.Parse(spec); err == nil {
		return u.Redacted()
	}
	return spec
}
