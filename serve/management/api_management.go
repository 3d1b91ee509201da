package management

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/text"
)

// The management TLS routes: GET /api/v1/management is what the UI's
// Management TLS panel shows ("ca show", "agent env" and, in mode auto,
// "ca rotate status"); the rotation steps under it are "ca rotate
// start|switch|finish|abort", with the same state functions, lock and
// validation. A step the stage does not allow is a 409 whose hint names
// the route to call instead (the state's hints name CLI commands).

// Paths of the rotation steps, for the hints that name them.
const (
	routeRotation = "/api/v1/management/rotation/"
	routeStart    = "POST " + routeRotation + "start"
	routeSwitch   = "POST " + routeRotation + "switch"
	routeFinish   = "POST " + routeRotation + "finish"
	routeAbort    = "POST " + routeRotation + "abort"
)

// managementDoc is GET /api/v1/management.
type managementDoc struct {
	*statemgmt.Info
	// AgentEnv are the lines of "agent env"; empty with AgentEnvError
	// saying why (mode provided without a CA in its file).
	AgentEnv      []string `json:"agent_env"`
	AgentEnvError string   `json:"agent_env_error"`
	// PublicURLSet: MANAGEMENT_PUBLIC_URL is set, so AgentEnv names it.
	PublicURLSet bool `json:"public_url_set"`
	// Rotation is "ca rotate status" in mode auto, null in the others
	// (there is no CA of p2ptls's to rotate).
	Rotation *statemgmt.RotationInfo `json:"rotation"`
}

// stepDoc is the answer of a rotation step: the panel after it, and
// whether it changed anything (a step run twice does not).
type stepDoc struct {
	Changed bool `json:"changed"`
	*managementDoc
}

func (a *api) showManagement(w http.ResponseWriter, r *http.Request) {
	doc, err := a.management(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

// management reads the panel's document.
func (a *api) management(ctx context.Context) (*managementDoc, error) {
	set := a.o.Settings
	info, err := statemgmt.Show(ctx, a.o.Store, set)
	if err != nil {
		return nil, err
	}
	doc := &managementDoc{Info: info, AgentEnv: []string{}, PublicURLSet: set.PublicURL != ""}
	if caPEM, err := statemgmt.AgentCA(ctx, a.o.Store, set); err != nil {
		doc.AgentEnvError = text.OneLine(err.Error())
	} else {
		doc.AgentEnv = agent.EnvLines(set.PublicURL, caPEM)
	}
	if autoMode(set) {
		if doc.Rotation, err = statemgmt.RotationStatus(ctx, a.o.Store, set); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// autoMode is the mode the rotation works in (an unset mode is auto, as
// for the state functions).
func autoMode(set statemgmt.Settings) bool {
	return set.Mode == statemgmt.ModeAuto || set.Mode == ""
}

// startRotation: POST /api/v1/management/rotation/start, body
// {"overlap":"30d"} optional (default 30 days).
func (a *api) startRotation(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Overlap string `json:"overlap"`
	}
	if err := decodeOptional(w, r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	overlap := statemgmt.DefaultOverlap
	if body.Overlap != "" {
		var err error
		if overlap, err = statemgmt.ParseOverlap(body.Overlap); err != nil {
			a.writeError(w, r, badRequest(`send "overlap" as a positive duration such as "30d", "14d" or "720h"`,
				"overlap %q is not a positive duration", body.Overlap))
			return
		}
	}
	now := time.Now()
	a.rotationStep(w, r, "start", overlap, func(ctx context.Context, set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.StartRotation(ctx, a.o.Store, set, overlap, now)
	})
}

// switchRotation: POST /api/v1/management/rotation/switch, body
// {"confirm_agents_updated":true} optional (needed for a CA that
// predates rotation, as the CLI's --confirm-agents-updated).
func (a *api) switchRotation(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Confirm bool `json:"confirm_agents_updated"`
	}
	if err := decodeOptional(w, r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.rotationStep(w, r, "switch", 0, func(ctx context.Context, set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.SwitchRotation(ctx, a.o.Store, set, body.Confirm, time.Now())
	})
}

// finishRotation: POST /api/v1/management/rotation/finish, body
// {"keep_old_key":true} optional.
func (a *api) finishRotation(w http.ResponseWriter, r *http.Request) {
	var body struct {
		KeepOldKey bool `json:"keep_old_key"`
	}
	if err := decodeOptional(w, r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.rotationStep(w, r, "finish", 0, func(ctx context.Context, set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.FinishRotation(ctx, a.o.Store, set, body.KeepOldKey, time.Now())
	})
}

// abortRotation: POST /api/v1/management/rotation/abort, no body.
func (a *api) abortRotation(w http.ResponseWriter, r *http.Request) {
	if err := noBody(w, r); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.rotationStep(w, r, "abort", 0, func(ctx context.Context, set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.AbortRotation(ctx, a.o.Store, set, time.Now())
	})
}

// rotationStep runs one step and answers the panel after it, or the
// step's refusal with a hint in the API's terms.
func (a *api) rotationStep(w http.ResponseWriter, r *http.Request, step string, overlap time.Duration,
	run func(context.Context, statemgmt.Settings) (*statemgmt.Step, error)) {
	ctx := r.Context()
	st, err := run(ctx, a.o.Settings)
	if err != nil {
		a.writeError(w, r, a.refusal(ctx, step, overlap, err))
		return
	}
	doc, err := a.management(ctx)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.o.Log.Info("management CA rotation step", "step", step, "changed", st.Changed, "stage", doc.Rotation.Stage)
	writeJSON(w, http.StatusOK, stepDoc{Changed: st.Changed, managementDoc: doc})
}

// refusal turns a step's refusal (fault.Invalid: a step the stage does
// not allow, a mode without a CA to rotate, an overlap past the CA's
// expiry, a switch from a CA that predates rotation) into the API's
// answer: the state's message, a hint that names routes, and 409 for a
// refusal by the state of things (the CLI's exit 2 covers both kinds),
// 422 for an overlap that cannot fit. The stage is read again after the
// refusal; anything else keeps the state's own classification.
func (a *api) refusal(ctx context.Context, step string, overlap time.Duration, err error) error {
	if fault.KindOf(err) != fault.Invalid {
		return err
	}
	msg := text.OneLine(err.Error())
	conflict := func(hint string) error { return &httpError{status: http.StatusConflict, msg: msg, hint: hint} }
	set := a.o.Settings
	if !autoMode(set) {
		return conflict("rotate the CA of your own certificate where it is issued; the rotation routes work with MANAGEMENT_TLS_MODE=auto")
	}
	info, serr := statemgmt.RotationStatus(ctx, a.o.Store, set)
	if serr != nil {
		return err
	}
	switch {
	case step == "start" && info.Stage == statemgmt.StageNone && !time.Now().Add(overlap).Before(info.Current.NotAfter):
		return &httpError{status: http.StatusUnprocessableEntity, msg: msg,
			hint: `send a shorter "overlap", one that ends before the current CA expires on ` + text.Stamp(info.Current.NotAfter)}
	case step == "start" && info.Stage == statemgmt.StageSwitched:
		return conflict(routeFinish + " completes the open rotation once every agent has the bundle, " + routeAbort + " undoes it")
	case step == "switch" && info.Stage == statemgmt.StageStarted && !info.Current.CrossVerifiable:
		return conflict("give every agent the bundle (GET /ca.crt or the agent install lines), check each with 'p2ptls agent check', then " +
			routeSwitch + ` with {"confirm_agents_updated":true}`)
	case step == "finish" && info.Stage == statemgmt.StageStarted:
		return conflict(routeSwitch + " comes first, so that the served certificate is from the next CA before the old one goes")
	case step == "abort" && info.Stage == statemgmt.StageNone && info.Last != nil && info.Last.Outcome == statemgmt.StageFinished:
		return conflict("the new CA is the management CA now; " + routeStart + " begins a rotation to change it again")
	case step != "start" && info.Stage == statemgmt.StageNone:
		return conflict(routeStart + " begins a rotation")
	}
	return err
}

// decodeOptional is decode for a POST whose body may be left out: no
// body, or only white space, is the zero v. (noBody is this with no
// fields.)
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, err := readBody(w, r)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	return decodeJSON(body, v)
}
