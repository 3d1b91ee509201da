package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// env is what the checks share: the input, the settings as far as they
// validate, and what was read once from the state.
type env struct {
	in Input
	s  state.Store
	// local is the store as a local directory, nil when it is not one:
	// the checks of file modes, the lock file, restore's staging
	// directories and leftovers are then not applicable.
	local state.Local
	root  string // the state directory, symlinks resolved; "" when it does not exist or the store is not local

	// set holds the settings with every part that validates normalised;
	// the parts that do not are reported by their own check.
	set        management.Settings
	modeErr    error
	listenErr  error
	urlErr     error
	publicHost string // normalised host of MANAGEMENT_PUBLIC_URL, "" when unset or invalid
	extraErr   error  // the first MANAGEMENT_TLS_EXTRA_HOSTS entry that does not validate

	// cfg is p2ptls.toml: validated, or decoded leniently (lenient) when it
	// does not validate but still decodes; nil when it cannot be read.
	cfg     *state.Config
	cfgErr  error
	lenient bool
	// infos are the mappings of cfg as "mapping list" describes them, in
	// cfg's order: infos[i] is cfg.Mappings[i]'s, with m nil for one not
	// described. Nil when the list failed.
	infos []mappingState
	// stateIndex is infos by mapping id, made when first needed.
	stateIndex map[string]int32
	// scan is the one walk of the state directory (see tree), nil until
	// a check needs it; scanDone is closed when a walk started in the
	// background has set them.
	scan     *treeScan
	scanErr  error
	scanDone chan struct{}
	// memo is doctor's memo (see pairMemoKind); pairsStored counts the
	// outcomes checkCoverage put in it.
	memo        *state.Memo
	pairsStored atomic.Int64

	// The management CA and auto server certificate, read once.
	ca        *x509.Certificate
	caErr     error // nil with ca == nil: there is none
	server    *pki.KeyPair
	serverErr error // nil with server == nil: there is none
	// provided is mode provided's pair, providedErr why it does not load.
	provided    *pki.KeyPair
	providedErr error
}

func newEnv(ctx context.Context, in Input) *env { return newEnvWalking(ctx, in, false) }

// newEnvWalking is newEnv; walk starts the walk of the state directory
// (see tree) before the config and the mappings are loaded, so that it
// overlaps their serial parts.
func newEnvWalking(ctx context.Context, in Input, walk bool) *env {
	e := &env{in: in, s: in.Store, memo: state.OpenMemo(in.Store, pairMemoKind)}
	if l, ok := in.Store.(state.Local); ok {
		e.local = l
		if real, err := filepath.EvalSymlinks(l.Root()); err == nil {
			if info, err := os.Stat(real); err == nil && info.IsDir() {
				e.root = real
			}
		}
	}
	if walk && e.root != "" {
		e.scanDone = make(chan struct{})
		go func() {
			defer close(e.scanDone)
			t, err := scanTree(e.root, e.memo)
			e.scan, e.scanErr = &t, err
		}()
	}
	e.settings()
	e.loadConfig(ctx)
	e.loadManagement(ctx)
	return e
}

// settings validates each part of the management settings on its own, so
// that one mistake does not hide the others.
func (e *env) settings() {
	in := e.in.Settings
	e.set = management.Settings{
		Mode: in.Mode, CertFile: in.CertFile, KeyFile: in.KeyFile, AllowInsecureHTTP: in.AllowInsecureHTTP,
		PublicURL: in.PublicURL, Listen: in.Listen,
	}
	mode := management.Settings{Mode: in.Mode, CertFile: in.CertFile, KeyFile: in.KeyFile, AllowInsecureHTTP: in.AllowInsecureHTTP}
	e.modeErr = mode.Validate()
	e.set.Mode = mode.Mode
	listen := management.Settings{Listen: in.Listen}
	if e.listenErr = listen.Validate(); e.listenErr == nil {
		e.set.Listen = listen.Listen
	}
	if strings.TrimSpace(in.PublicURL) != "" {
		e.publicHost, e.urlErr = management.PublicHost(in.PublicURL)
	}
	if e.urlErr != nil {
		e.set.PublicURL = ""
	}
	for _, h := range in.ExtraHosts {
		one := management.Settings{ExtraHosts: []string{h}}
		if err := one.Validate(); err != nil {
			if e.extraErr == nil {
				e.extraErr = err
			}
			continue
		}
		e.set.ExtraHosts = append(e.set.ExtraHosts, one.ExtraHosts[0])
	}
}

// modeName is the mode the state-reading checks act on: an unknown mode is
// looked at as auto, the default.
func (e *env) modeName() string {
	switch e.set.Mode {
	case management.ModeProvided, management.ModeOff:
		return e.set.Mode
	}
	return management.ModeAuto
}

// loadConfig reads p2ptls.toml; when it does not validate (a hand edit),
// it is decoded without validation so that the mapping checks can still
// say which mapping is wrong.
func (e *env) loadConfig(ctx context.Context) {
	cfg, err := state.LoadConfig(ctx, e.s)
	if err == nil {
		e.cfg = cfg
	} else {
		e.cfgErr = err
		if loose, ok := state.LoadConfigLoose(ctx, e.s); ok {
			for i := range loose.Mappings {
				loose.Mappings[i].Hosts = slices.Clone(loose.Mappings[i].Hosts)
				for j, h := range loose.Mappings[i].Hosts {
					loose.Mappings[i].Hosts[j] = looseHost(h)
				}
			}
			e.cfg, e.lenient = loose, true
		}
	}
	if e.cfg != nil {
		// The walk has stat'ed every mapping's files: the summaries take
		// their identities from it (waiting for it) instead of a stat each.
		e.infos = make([]mappingState, len(e.cfg.Mappings))
		next := 0
		err := mappings.EachSeen(ctx, e.s, e.cfg, e.in.Now, e.walked().fileID, func(info mappings.Info) error {
			// In cfg's order: the mapping is at or after the last one's.
			for next < len(e.cfg.Mappings) && e.cfg.Mappings[next].ID != info.ID {
				next++
			}
			if next < len(e.cfg.Mappings) {
				e.infos[next] = stateOf(&e.cfg.Mappings[next], &info)
				next++
			}
			return nil
		})
		if err != nil {
			e.infos = nil
		}
	}
}

// mappingState is what the checks need of a mapping's mappings.Info: 100k
// of them are kept for the whole run, so not the rest (hosts, paths,
// fingerprint).
type mappingState struct {
	m                           *state.Mapping // in cfg.Mappings
	Status, LastError, ServedBy string
	NotBefore, NotAfter         *time.Time
	NextRenewalAt               *time.Time
	LastAttemptAt, RetryAt      *time.Time
	BackoffReason               string // see checkBackoff
}

func stateOf(m *state.Mapping, info *mappings.Info) mappingState {
	return mappingState{
		m: m, Status: info.Status, LastError: info.LastError, ServedBy: info.ServedBy,
		NotBefore: info.NotBefore, NotAfter: info.NotAfter,
		NextRenewalAt: info.NextRenewalAt, LastAttemptAt: info.LastAttemptAt, RetryAt: info.RetryAt,
		BackoffReason: info.BackoffReason,
	}
}

// stateOfID is the state of mapping id, and whether it was described.
func (e *env) stateOfID(id string) (mappingState, bool) {
	if e.stateIndex == nil {
		e.stateIndex = make(map[string]int32, len(e.infos))
		for i, info := range e.infos {
			if info.m != nil {
				e.stateIndex[info.m.ID] = int32(i)
			}
		}
	}
	i, ok := e.stateIndex[id]
	if !ok {
		return mappingState{}, false
	}
	return e.infos[i], true
}

// looseHost is a host of a file that does not validate, in canonical form
// when it has one.
func looseHost(h string) string {
	if n, err := hostname.Normalize(h); err == nil {
		return n
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}

// loadManagement reads the management CA, the auto server certificate and
// mode provided's files.
func (e *env) loadManagement(ctx context.Context) {
	if b, err := e.s.Read(ctx, management.CACertFile); err == nil {
		if chain, err := pki.ParseCertChain(b); err != nil {
			e.caErr = err
		} else {
			e.ca = chain[0]
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		e.caErr = err
	}
	if certPEM, err := e.s.Read(ctx, management.ServerCertFile); err == nil {
		keyPEM, kerr := e.s.Read(ctx, management.ServerKeyFile)
		if kerr != nil {
			e.serverErr = kerr
		} else if e.server, e.serverErr = pki.LoadKeyPair(certPEM, keyPEM); e.serverErr != nil {
			e.server = nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		e.serverErr = err
	}
	if e.modeName() == management.ModeProvided && e.set.CertFile != "" && e.set.KeyFile != "" {
		e.provided, e.providedErr = management.LoadProvided(e.set.CertFile, e.set.KeyFile, e.in.Now)
	}
}

// serverLeaf is the certificate management serves in the current mode:
// the auto server certificate or mode provided's leaf. ok is false when
// there is none yet (auto) or it does not load; why then says which check
// reports it, "" when there is simply none yet.
func (e *env) serverLeaf() (leaf *x509.Certificate, why string) {
	switch e.modeName() {
	case management.ModeProvided:
		if e.provided == nil {
			return nil, "the provided certificate does not load (see " + IDProvidedFiles + ")"
		}
		return e.provided.Cert, ""
	case management.ModeAuto:
		if e.serverErr != nil {
			return nil, "the server certificate does not load (see " + IDServerCertificate + ")"
		}
		if e.server == nil {
			return nil, ""
		}
		return e.server.Cert, ""
	}
	return nil, ""
}

// where names a state file the way the user finds it: its path in a
// local directory, else its name in the store.
func (e *env) where(name string) string {
	if e.local == nil {
		return name
	}
	return filepath.Join(e.local.Root(), filepath.FromSlash(name))
}

// tree walks the state directory once, for the checks that look at its
// files; only for a local store whose directory exists.
func (e *env) tree() (*treeScan, error) {
	if e.scanDone != nil {
		<-e.scanDone
	}
	if e.scan == nil {
		t, err := scanTree(e.root, e.memo)
		e.scan, e.scanErr = &t, err
	}
	return e.scan, e.scanErr
}

// walked is the walk of the state directory when one was made or
// started (waiting for it), nil otherwise.
func (e *env) walked() *treeScan {
	if e.scanDone != nil {
		<-e.scanDone
	}
	return e.scan
}

// saveMemo saves doctor's memo when a check put something in it, keeping
// only the entries of the mappings and directories there are now. A run
// that put nothing in does not write it (100k mappings are 20 MB): the
// entries of what was removed go with the next save, and are never used
// meanwhile (their files are gone).
func (e *env) saveMemo() {
	e.walked()
	stored := e.pairsStored.Load()
	if e.scan != nil {
		stored += e.scan.stored
		e.scan.putMappingDirs(e.memo)
	}
	if stored == 0 {
		return
	}
	// Entries by certificate are the file mappings' (and, without a
	// walk, every mapping's); a mapping directory's pair is in the
	// directory's entry.
	var certs, dirs map[string]bool
	if e.cfg != nil && !e.lenient {
		certs = make(map[string]bool)
		for _, m := range e.cfg.Mappings {
			if m.Source == state.SourceFile || e.scan == nil {
				cert, _ := pairFiles(m)
				certs[cert] = true
			}
		}
	}
	if e.scan != nil && e.scanErr == nil {
		dirs = make(map[string]bool, len(e.scan.dirs))
		for _, d := range e.scan.dirs {
			dirs[listingName(d)] = true
		}
	}
	e.memo.Retain(func(name string) bool {
		if strings.HasSuffix(name, "/") {
			return dirs == nil || dirs[name]
		}
		return certs == nil || certs[name]
	})
	e.memo.Save()
}

// noDir reports whether the store is a local directory that does not
// exist yet.
func (e *env) noDir() bool { return e.local != nil && e.root == "" }

// notApplicable is what a check of something only a local directory has
// says of a store that is not one.
func notApplicable(id, what string) Check {
	return ok(id, "not applicable: %s, and the state is not kept in a local directory", what)
}
