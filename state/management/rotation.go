package management

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// A rotation of the management CA replaces the current CA (certs/management/ca.crt)
// by the next one in stages, each one state.Update, so that a crash leaves
// one stage or the next:
//
//	certs/management/
//	├── ca.crt, ca.key         the current CA, until finish; then the next one
//	├── server.crt, server.key leaf + the chain the stage serves
//	├── rotation.toml          the stage, times, both fingerprints (kept after finish or abort, as the last outcome)
//	├── next/
//	│   ├── ca.crt, ca.key     the next CA (0600, like every rotation file)
//	│   ├── cross.crt          the next CA certified by the current CA's key
//	│   └── current-cross.crt  the current CA certified by the next CA's key
//	└── retired/<UTC time>/ca.crt  the old CA after finish (ca.key only with --keep-old-key);
//	                               the next CA's certificate after abort
//
// What is served, so that an agent trusting the current CA, the next one,
// or both verifies at every stage before finish:
//
//	started:  leaf from the current CA + current-cross.crt (a next-only agent verifies through it)
//	switched: leaf from the next CA + cross.crt (a current-only agent verifies through it)
//	finished: leaf from the new CA alone
const (
	RotationFile     = Dir + "/rotation.toml"
	NextDir          = Dir + "/next"
	NextCertFile     = NextDir + "/ca.crt"
	NextKeyFile      = NextDir + "/ca.key"
	NextCrossFile    = NextDir + "/cross.crt"
	CurrentCrossFile = NextDir + "/current-cross.crt"
)

// Stages of a rotation. StageNone is no rotation open; a finished or
// aborted one is recorded as such and reported as the last outcome.
const (
	StageNone     = "none"
	StageStarted  = "started"
	StageSwitched = "switched"
	StageFinished = "finished"
	StageAborted  = "aborted"
)

// DefaultOverlap is how long a rotation is meant to stay open when start
// is given no --overlap: the time agents get to take the new CA.
const DefaultOverlap = 30 * 24 * time.Hour

// RecordByRotate is CARecord.By when finish made the next CA the current one.
const RecordByRotate = "ca rotate finish"

const (
	rotationVersion = 1
	rotationLimit   = 4096 // bytes; the record is a few lines
)

// Rotation is the content of RotationFile.
type Rotation struct {
	Version int    `toml:"version"`
	Stage   string `toml:"stage"`
	// Current and Next are the fingerprints of the CA being replaced and
	// of its successor.
	Current    string    `toml:"current_fingerprint_sha256"`
	Next       string    `toml:"next_fingerprint_sha256"`
	StartedAt  time.Time `toml:"started_at"`
	Deadline   time.Time `toml:"overlap_deadline"`
	SwitchedAt time.Time `toml:"switched_at,omitempty"`
	EndedAt    time.Time `toml:"ended_at,omitempty"`
	// Retired is where finish put the old CA (abort: the next one).
	Retired string `toml:"retired,omitempty"`
}

// Open reports whether the rotation is under way (started or switched).
func (r *Rotation) Open() bool {
	return r != nil && (r.Stage == StageStarted || r.Stage == StageSwitched)
}

// ReadRotation returns the open rotation, nil when none is open.
func ReadRotation(ctx context.Context, s state.Reader) (*Rotation, error) {
	r, err := readRotationFile(ctx, s)
	if err != nil || !r.Open() {
		return nil, err
	}
	return r, nil
}

// readRotationFile returns the record as it is (open, finished or
// aborted), nil when there is none.
func readRotationFile(ctx context.Context, s state.Reader) (*Rotation, error) {
	b, err := s.Read(ctx, RotationFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", RotationFile, err)
	}
	var r Rotation
	if len(b) > rotationLimit || toml.Unmarshal(b, &r) != nil || r.Version != rotationVersion ||
		(r.Stage != StageStarted && r.Stage != StageSwitched && r.Stage != StageFinished && r.Stage != StageAborted) {
		return nil, fault.Failf("restore certs/management from a backup",
			"%s, the record of the management CA rotation, is damaged", state.Locate(s, RotationFile))
	}
	return &r, nil
}

func writeRotation(ctx context.Context, s state.Store, r *Rotation) error {
	b, err := toml.Marshal(r)
	if err != nil {
		return err
	}
	header := []byte("# The management CA rotation: change it with 'p2ptls ca rotate start|switch|finish|abort', never by hand.\n")
	if err := s.Write(ctx, RotationFile, append(header, b...), state.SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", RotationFile, err)
	}
	return nil
}

// issuer is the CA that issues the server certificate at the rotation's
// stage, and the certificates served after the leaf.
type issuer struct {
	ca    *pki.KeyPair
	chain []*x509.Certificate
	role  string // "current" or "next", for messages
}

// loadIssuer is the issuer the rotation's stage names: the current CA
// with the current CA's cross-certificate (started), the next CA with its
// cross-certificate (switched), the current CA alone (no rotation).
func loadIssuer(ctx context.Context, s state.Store) (*issuer, error) {
	r, err := ReadRotation(ctx, s)
	if err != nil {
		return nil, err
	}
	switch {
	case r == nil:
		ca, err := loadCA(ctx, s)
		if err != nil {
			return nil, err
		}
		return &issuer{ca: ca, role: "current"}, nil
	case r.Stage == StageStarted:
		ca, err := loadCA(ctx, s)
		if err != nil {
			return nil, err
		}
		cross, err := readCert(ctx, s, CurrentCrossFile)
		if err != nil {
			return nil, err
		}
		return &issuer{ca: ca, chain: []*x509.Certificate{cross}, role: "current"}, nil
	default:
		next, err := loadNext(ctx, s)
		if err != nil {
			return nil, err
		}
		cross, err := readCert(ctx, s, NextCrossFile)
		if err != nil {
			return nil, err
		}
		return &issuer{ca: next, chain: []*x509.Certificate{cross}, role: "next"}, nil
	}
}

// loadNext reads the next CA and its key.
func loadNext(ctx context.Context, s state.Reader) (*pki.KeyPair, error) {
	certPEM, err := s.Read(ctx, NextCertFile)
	if err != nil {
		return nil, damagedRotation(s, NextCertFile, err)
	}
	keyPEM, err := s.Read(ctx, NextKeyFile)
	if err != nil {
		return nil, damagedRotation(s, NextKeyFile, err)
	}
	kp, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, damagedRotation(s, NextDir, err)
	}
	return kp, nil
}

func readCert(ctx context.Context, s state.Reader, name string) (*x509.Certificate, error) {
	b, err := s.Read(ctx, name)
	if err != nil {
		return nil, damagedRotation(s, name, err)
	}
	certs, err := pki.ParseCertChain(b)
	if err != nil {
		return nil, damagedRotation(s, name, err)
	}
	return certs[0], nil
}

func damagedRotation(s state.Reader, name string, err error) error {
	return fault.Failf("restore certs/management from a backup taken during the rotation, or run 'p2ptls ca rotate abort' if the current CA is intact",
		"the management CA rotation is open but %s cannot be used: %v", state.Locate(s, name), err)
}

// Step is what a rotation step did.
type Step struct {
	// Changed is false when the state already was at the stage the step
	// makes: nothing was written.
	Changed  bool
	Rotation *Rotation // the record after the step
}

// requireAuto refuses a rotation outside auto mode: there is no CA of
// p2ptls's to rotate.
func requireAuto(set Settings) error {
	if set.Mode == ModeAuto || set.Mode == "" {
		return nil
	}
	return fault.Invalidf("rotate the CA of your own certificate where it is issued; 'p2ptls ca rotate' works with MANAGEMENT_TLS_MODE=auto",
		"MANAGEMENT_TLS_MODE is %s: management TLS does not use the p2ptls management CA, so there is nothing to rotate", set.Mode)
}

// rotationStep runs one step as one state.Update: step writes the new
// record (placeStage) and returns it, or returns errUnchanged.
func rotationStep(ctx context.Context, s state.Store, set Settings, purpose string, step func(tx *state.Tx, r *Rotation) (*Rotation, error)) (*Step, error) {
	if err := requireAuto(set); err != nil {
		return nil, err
	}
	var out *Step
	err := state.Update(ctx, s, purpose, func(tx *state.Tx) error {
		r, err := readRotationFile(ctx, tx)
		if err != nil {
			return err
		}
		next, err := step(tx, r)
		if errors.Is(err, errUnchanged) {
			out = &Step{Rotation: r}
			return err
		}
		if err != nil {
			return err
		}
		out = &Step{Changed: true, Rotation: next}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// StartRotation creates the next CA (as ca init creates one) and both
// cross-certificates, and serves the current CA's leaf with the current
// CA certified by the next one, so that an agent given the next CA alone
// verifies too. From now on AgentCA hands out both CAs. The overlap is
// how long agents get: its end is the rotation's deadline.
func StartRotation(ctx context.Context, s state.Store, set Settings, overlap time.Duration, now time.Time) (*Step, error) {
	if overlap <= 0 {
		return nil, fault.Invalidf("give a positive duration such as 30d or 720h", "the overlap %v is not positive", overlap)
	}
	return rotationStep(ctx, s, set, "ca rotate start", func(tx *state.Tx, r *Rotation) (*Rotation, error) {
		switch {
		case r.Open() && r.Stage == StageStarted:
			return nil, errUnchanged
		case r.Open():
			return nil, outOfOrder(r, "start", "'p2ptls ca rotate finish' completes it, 'p2ptls ca rotate abort' undoes it")
		}
		cur, err := loadCA(ctx, tx)
		if err != nil {
			return nil, err
		}
		deadline := now.Add(overlap)
		if !deadline.Before(cur.Cert.NotAfter) {
			return nil, fault.Invalidf("give a shorter --overlap",
				"an overlap of %v ends on %s, after the current management CA expires (%s)", overlap, text.Stamp(deadline), text.Stamp(cur.Cert.NotAfter))
		}
		next, err := newCA(now)
		if err != nil {
			return nil, fmt.Errorf("generate the next management CA: %w", err)
		}
		nextCross, err := crossSign(cur, next.Cert, now)
		if err != nil {
			return nil, err
		}
		curCross, err := crossSign(next, cur.Cert, now)
		if err != nil {
			return nil, err
		}
		// All 0600: only p2ptls reads them, and a backup carries a file
		// p2ptls does not list as a certificate only when it is private.
		for _, f := range []struct {
			name string
			data []byte
		}{{NextKeyFile, next.KeyPEM}, {NextCertFile, next.CertPEM}, {NextCrossFile, nextCross}, {CurrentCrossFile, curCross}} {
			if err := tx.Write(ctx, f.name, f.data, state.SecretMode); err != nil {
				return nil, fmt.Errorf("save %s: %w", f.name, err)
			}
		}
		rot := &Rotation{Version: rotationVersion, Stage: StageStarted, Current: pki.Fingerprint(cur.Cert), Next: pki.Fingerprint(next.Cert),
			StartedAt: now.UTC().Truncate(time.Second), Deadline: deadline.UTC().Truncate(time.Second)}
		return rot, placeStage(ctx, tx, rot, set, now)
	})
}

// SwitchRotation serves a leaf issued by the next CA, with the next CA
// certified by the current one, so that an agent given only the current
// CA verifies through it. A current CA that allows no intermediate (every
// CA made before p2ptls could rotate) cannot: then SwitchRotation refuses
// unless oldAgentsUpdated says every agent has the bundle or the next CA.
func SwitchRotation(ctx context.Context, s state.Store, set Settings, oldAgentsUpdated bool, now time.Time) (*Step, error) {
	return rotationStep(ctx, s, set, "ca rotate switch", func(tx *state.Tx, r *Rotation) (*Rotation, error) {
		switch {
		case r.Open() && r.Stage == StageSwitched:
			return nil, errUnchanged
		case !r.Open():
			return nil, outOfOrder(r, "switch", "'p2ptls ca rotate start' begins a rotation")
		}
		cur, err := loadCA(ctx, tx)
		if err != nil {
			return nil, err
		}
		if !CrossVerifiable(cur.Cert) && !oldAgentsUpdated {
			return nil, fault.Invalidf("give every agent the bundle ('p2ptls agent env' or 'p2ptls ca export'), check each with 'p2ptls agent check', then run 'p2ptls ca rotate switch --"+FlagAgentsUpdated+"'",
				"the current management CA %s allows no intermediate certificate (it predates CA rotation), so after switch an agent that trusts only it cannot verify management TLS",
				pki.Fingerprint(cur.Cert))
		}
		next := *r
		next.Stage = StageSwitched
		next.SwitchedAt = now.UTC().Truncate(time.Second)
		return &next, placeStage(ctx, tx, &next, set, now)
	})
}

// FlagAgentsUpdated is switch's flag that confirms every agent has the
// bundle or the next CA; the refusal of SwitchRotation names it.
const FlagAgentsUpdated = "confirm-agents-updated"

// CrossVerifiable reports whether an agent trusting ca alone can verify a
// certificate of its successor through a cross-certificate: ca must allow
// one intermediate below it.
func CrossVerifiable(ca *x509.Certificate) bool {
	return ca.MaxPathLen != 0 // -1 when the certificate sets no limit
}

// FinishRotation makes the next CA the current one: the old CA goes to
// certs/management/retired/<UTC time>/ca.crt (its key with keepOldKey,
// else it is deleted), the server certificate is served alone, AgentCA
// hands out the new CA only, and the CA record names it.
func FinishRotation(ctx context.Context, s state.Store, set Settings, keepOldKey bool, now time.Time) (*Step, error) {
	return rotationStep(ctx, s, set, "ca rotate finish", func(tx *state.Tx, r *Rotation) (*Rotation, error) {
		switch {
		case r != nil && r.Stage == StageFinished:
			return nil, errUnchanged
		case !r.Open() || r.Stage != StageSwitched:
			return nil, outOfOrder(r, "finish", "'p2ptls ca rotate switch' comes first, so that the served certificate is from the next CA before the old one goes")
		}
		cur, err := loadCA(ctx, tx)
		if err != nil {
			return nil, err
		}
		next, err := loadNext(ctx, tx)
		if err != nil {
			return nil, err
		}
		dir, err := retiredDir(ctx, tx, now)
		if err != nil {
			return nil, err
		}
		if err := tx.Write(ctx, dir+"/ca.crt", cur.CertPEM, state.SecretMode); err != nil {
			return nil, err
		}
		if keepOldKey {
			if err := tx.Write(ctx, dir+"/ca.key", cur.KeyPEM, state.SecretMode); err != nil {
				return nil, err
			}
		}
		if err := tx.Delete(ctx, NextDir); err != nil {
			return nil, err
		}
		if err := writePair(ctx, tx, CAKeyFile, CACertFile, next); err != nil {
			return nil, err
		}
		if err := writeCARecord(ctx, tx, next.Cert, RecordByRotate, now); err != nil {
			return nil, err
		}
		done := *r
		done.Stage, done.EndedAt, done.Retired = StageFinished, now.UTC().Truncate(time.Second), dir
		return &done, placeStage(ctx, tx, &done, set, now)
	})
}

// AbortRotation goes back to the current CA alone from started or
// switched: the next CA's certificate is kept under retired/ for the
// record (an agent given it alone must be given the current CA again),
// its key and the cross-certificates are deleted, and the server
// certificate is the current CA's alone.
func AbortRotation(ctx context.Context, s state.Store, set Settings, now time.Time) (*Step, error) {
	return rotationStep(ctx, s, set, "ca rotate abort", func(tx *state.Tx, r *Rotation) (*Rotation, error) {
		switch {
		case r != nil && r.Stage == StageAborted:
			return nil, errUnchanged
		case !r.Open():
			return nil, outOfOrder(r, "abort", "'p2ptls ca rotate start' begins a new rotation")
		}
		if _, err := loadCA(ctx, tx); err != nil {
			return nil, err
		}
		nextPEM, err := tx.Read(ctx, NextCertFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", NextCertFile, err)
		}
		done := *r
		if err == nil {
			if done.Retired, err = retiredDir(ctx, tx, now); err != nil {
				return nil, err
			}
			if err := tx.Write(ctx, done.Retired+"/ca.crt", nextPEM, state.SecretMode); err != nil {
				return nil, err
			}
		}
		if err := tx.Delete(ctx, NextDir); err != nil {
			return nil, err
		}
		done.Stage, done.EndedAt = StageAborted, now.UTC().Truncate(time.Second)
		return &done, placeStage(ctx, tx, &done, set, now)
	})
}

// placeStage writes r into the change first (the issuer follows the
// record the change holds) and makes the server certificate fit it.
func placeStage(ctx context.Context, tx *state.Tx, r *Rotation, set Settings, now time.Time) error {
	if err := writeRotation(ctx, tx, r); err != nil {
		return err
	}
	iss, err := loadIssuer(ctx, tx)
	if err != nil {
		return err
	}
	_, _, err = placeServer(ctx, tx, iss, set.WantedNames(), now)
	return err
}

// outOfOrder is the refusal of a step the stage does not allow.
func outOfOrder(r *Rotation, step, hint string) error {
	switch {
	case r.Open():
		return fault.Invalidf(hint, "the management CA rotation is at stage %s (started %s), where %s does not apply", r.Stage, text.Stamp(r.StartedAt), step)
	case r != nil && r.Stage == StageFinished && step == "abort":
		return fault.Invalidf("the new CA is the management CA now; to change it again run 'p2ptls ca rotate start'",
			"the management CA rotation finished on %s and cannot be aborted: the old CA %s is retired in %s", text.Stamp(r.EndedAt), r.Current, r.Retired)
	case step == "finish" && r != nil && r.Stage == StageAborted:
		return fault.Invalidf("'p2ptls ca rotate start' begins a new rotation",
			"the management CA rotation was aborted on %s, so there is nothing to finish", text.Stamp(r.EndedAt))
	}
	return fault.Invalidf("'p2ptls ca rotate start' begins one", "no management CA rotation is open, so there is nothing to %s", step)
}

// ParseOverlap reads an overlap: Go durations (720h) and whole days (30d).
func ParseOverlap(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > 100*365 {
			err = errors.New("too long")
		}
	} else {
		d, err = time.ParseDuration(strings.TrimSpace(s))
	}
	if err != nil || d <= 0 {
		return 0, fault.Invalidf("give a positive duration such as 30d, 14d or 720h", "--overlap %q is not a positive duration", s)
	}
	return d, nil
}

// RotationInfo is what "ca rotate status" prints.
type RotationInfo struct {
	// Stage is none, started or switched.
	Stage   string      `json:"stage"`
	Current *RotationCA `json:"current"`
	Next    *RotationCA `json:"next"`
	Started *time.Time  `json:"started_at"`
	Switch  *time.Time  `json:"switched_at"`
	// Deadline is the end of the overlap; Overdue says it has passed.
	Deadline *time.Time `json:"overlap_deadline"`
	Overdue  bool       `json:"overdue"`
	// ServedBy is the fingerprint of the CA that issued the served
	// server certificate.
	ServedBy string        `json:"served_by"`
	NextStep string        `json:"next_step"`
	Agents   []AgentAdvice `json:"agents"`
	// Last is the rotation that finished or was aborted last, if any.
	Last *LastRotation `json:"last_rotation"`
}

// RotationCA describes one CA of a rotation.
type RotationCA struct {
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	Subject           string    `json:"subject"`
	NotAfter          time.Time `json:"not_after"`
	File              string    `json:"file"`
	// CrossVerifiable: an agent trusting only this CA verifies its
	// successor's certificates through a cross-certificate.
	CrossVerifiable bool `json:"cross_verifiable"`
}

// AgentAdvice says what an agent trusting one set of CAs meets.
type AgentAdvice struct {
	// Kind: current-only (MANAGEMENT_CA_FILE/MANAGEMENT_CA_PEM_BASE64 holds
	// the current CA alone), bundle (both), next-only.
	Kind           string `json:"kind"`
	VerifiesNow    bool   `json:"verifies_now"`
	SurvivesFinish bool   `json:"survives_finish"`
	Action         string `json:"action"`
}

// LastRotation is a rotation's outcome.
type LastRotation struct {
	Outcome string    `json:"outcome"` // finished or aborted
	Old     string    `json:"old_fingerprint_sha256"`
	New     string    `json:"new_fingerprint_sha256"`
	EndedAt time.Time `json:"ended_at"`
	Retired string    `json:"retired"`
}

// Kinds of agent in AgentAdvice.
const (
	AgentKindCurrentOnly = "current-only"
	AgentKindBundle      = "bundle"
	AgentKindNextOnly    = "next-only"
)

// RotationStatus describes the rotation: its stage, both CAs, the
// deadline and what each kind of agent needs to do.
func RotationStatus(ctx context.Context, s state.Store, set Settings) (*RotationInfo, error) {
	if err := requireAuto(set); err != nil {
		return nil, err
	}
	rec, err := readRotationFile(ctx, s)
	if err != nil {
		return nil, err
	}
	_, cur, err := CACertificate(ctx, s)
	if err != nil {
		return nil, err
	}
	info := &RotationInfo{Stage: StageNone, Current: describeCA(s, cur, CACertFile), Agents: []AgentAdvice{},
		ServedBy: pki.Fingerprint(cur), NextStep: "none needed; 'p2ptls ca rotate start' begins a rotation when the CA must change"}
	if rec != nil && !rec.Open() {
		info.Last = &LastRotation{Outcome: rec.Stage, Old: rec.Current, New: rec.Next, EndedAt: rec.EndedAt}
		if rec.Retired != "" {
			info.Last.Retired = state.Locate(s, rec.Retired)
		}
	}
	if !rec.Open() {
		return info, nil
	}
	next, err := readCert(ctx, s, NextCertFile)
	if err != nil {
		return nil, err
	}
	info.Stage, info.Next = rec.Stage, describeCA(s, next, NextCertFile)
	info.Started, info.Deadline = &rec.StartedAt, &rec.Deadline
	info.Overdue = time.Now().After(rec.Deadline)
	oldVerifies := true
	if rec.Stage == StageSwitched {
		info.Switch = &rec.SwitchedAt
		info.ServedBy = rec.Next
		oldVerifies = info.Current.CrossVerifiable
		info.NextStep = "'p2ptls ca rotate finish' once every agent has the bundle or the next CA (by " + text.Stamp(rec.Deadline) + ")"
	} else {
		info.NextStep = "give every agent the bundle ('p2ptls agent env' or 'p2ptls ca export'), then 'p2ptls ca rotate switch'"
	}
	update := "replace its CA file (MANAGEMENT_CA_FILE) or MANAGEMENT_CA_PEM_BASE64 with the bundle from 'p2ptls ca export' (or 'p2ptls agent env') before finish, then check with 'p2ptls agent check'"
	info.Agents = []AgentAdvice{
		{Kind: AgentKindCurrentOnly, VerifiesNow: oldVerifies, SurvivesFinish: false, Action: update},
		{Kind: AgentKindBundle, VerifiesNow: true, SurvivesFinish: true, Action: "nothing; after finish it may drop the old CA (the first of the bundle)"},
		{Kind: AgentKindNextOnly, VerifiesNow: true, SurvivesFinish: true, Action: "nothing; an abort would need it given the current CA again"},
	}
	return info, nil
}

func describeCA(s state.Reader, c *x509.Certificate, file string) *RotationCA {
	return &RotationCA{FingerprintSHA256: pki.Fingerprint(c), Subject: c.Subject.String(), NotAfter: c.NotAfter.UTC(),
		File: state.Locate(s, file), CrossVerifiable: CrossVerifiable(c)}
}

// CheckServedChain verifies the auto server certificate, with the chain
// it is served with, for an agent trusting each CA that AgentBundle hands
// out, on its own: during a rotation an agent may hold either one, and
// the leaf may come from either. The error names the CA that fails.
// doctor's check of the server certificate belongs on this, not on a
// signature by ca.crt, which the leaf of stage switched does not have.
func CheckServedChain(ctx context.Context, s state.Store, now time.Time) error {
	bundle, err := AgentBundle(ctx, s)
	if err != nil {
		return err
	}
	cas, err := pki.ParseCertChain(bundle)
	if err != nil {
		return err
	}
	b, err := s.Read(ctx, ServerCertFile)
	if err != nil {
		return fmt.Errorf("read %s: %w", ServerCertFile, err)
	}
	chain, err := pki.ParseCertChain(b)
	if err != nil {
		return fault.Failf("re-issue it with 'p2ptls ca renew-server'", "%s is damaged: %v", ServerCertFile, err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, ca := range cas {
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
			return fault.Failf("run 'p2ptls ca renew-server' (it issues from the CA the rotation's stage names, with its cross-certificate)",
				"the management server certificate, as served, does not verify for an agent that trusts the CA %s: %v", pki.Fingerprint(ca), err)
		}
	}
	return nil
}

// IssuingCA is the certificate of the CA that issues the server
// certificate at the rotation's stage: the next CA once switched, else
// the current one. Unlike the issuance itself it reads no key, for
// checks (doctor) that only compare signatures.
func IssuingCA(ctx context.Context, s state.Store) (*x509.Certificate, error) {
	r, err := ReadRotation(ctx, s)
	if err != nil {
		return nil, err
	}
	if r != nil && r.Stage == StageSwitched {
		return readCert(ctx, s, NextCertFile)
	}
	_, ca, err := CACertificate(ctx, s)
	return ca, err
}
