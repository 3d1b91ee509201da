package management

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/strictjson"
	"github.com/p2pstream/p2ptls/state/text"
)

// The JSON API under /api/v1. Handlers are thin: they decode the request,
// call the same state code the command line calls (which takes the state
// lock for every change, validates, and bumps p2ptls.rev), and answer with
// the JSON the command line prints with --output json.
//
// Status codes, decided once for every endpoint:
//
//	400  the request is not a usable JSON request: malformed JSON, an unknown
//	     field (also one in another case), a field given twice or of the
//	     wrong JSON type, data after the object, an empty body where one is
//	     needed, a bad query parameter
//	401  missing, unknown or revoked admin token (requireToken)
//	404  the resource named in the path does not exist (state: a
//	     fault.NotFound), or no such endpoint
//	405  the path exists but not with this method (Allow lists the methods)
//	409  a well-formed request the current state refuses: a name that
//	     already exists, a DNS credential still in use, a certificate
//	     p2ptls cannot renew (state: any other failure it classified; exit 1
//	     on the command line)
//	413  the body is larger than maxBodyBytes
//	415  a POST with a body that is not Content-Type application/json
//	422  well-formed JSON whose content the state code refuses: a bad
//	     hostname, PEM that does not parse or match its key, a wildcard
//	     without DNS-01, a missing listener or DNS credential named by a
//	     mapping (state: fault.Invalid; exit 2 on the command line), and
//	     the API's own translations: a relative cert_file, allow_expired
//	     for a source that takes none
//	500  anything the state code did not classify (an I/O error), and a
//	     p2ptls.toml that cannot be read (broken by a hand edit)
//	502  an ACME issuance attempt failed (POST …/issue); it is recorded as
//	     the mapping's last_error
//	503  the state directory stayed locked past the lock timeout; Retry-After
//
// Every error answer is {"error": "…", "hint": "…"}, with a hint for every
// status when the state code gave none (defaultHint); no answer and no log
// line carries a secret (DNS tokens are written, never read back).

// maxBodyBytes bounds every request body: a certificate chain and key in
// PEM are a few KiB.
const maxBodyBytes = 1 << 20

// retryAfterLocked is the Retry-After, in seconds, of a 503 for a state
// directory that stayed locked.
const retryAfterLocked = "5"

// httpError is an error answer decided by the API layer itself (as opposed
// to one classified by the state code).
type httpError struct {
	status    int
	msg, hint string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(hint, format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...), hint: hint}
}

// api serves /api/v1 over the state of o. Its reads answer from configs,
// whose config is shared between requests: no handler modifies it, and
// every change goes through state.Update, which loads under the lock.
type api struct {
	o       Options
	configs *state.ConfigCache
}

// writeError answers err with the status its kind calls for (see the table
// above) and logs it: server-side failures at error level, a failed ACME
// attempt or a busy state at warning level, refusals at debug level.
// Messages of the state code never contain a secret.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, hint := a.classify(err)
	if hint == "" {
		hint = defaultHint(status)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterLocked)
	}
	switch {
	case status == http.StatusInternalServerError:
		a.o.Log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", msg)
	case status >= 500: // a failed ACME attempt, a busy state: logged by the state code too
		a.o.Log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", msg)
	default:
		a.o.Log.Debug("api request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", msg)
	}
	writeJSON(w, status, apiError{Error: msg, Hint: hint})
}

// classify maps err to a status, a message and a hint.
func (a *api) classify(err error) (int, string, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.msg, he.hint
	}
	msg, hint := text.OneLine(err.Error()), text.OneLine(apiWords(fault.HintOf(err)))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit), "send a smaller body"
	}
	// A p2ptls.toml that does not load: the state is broken, not the request.
	var broken *state.ConfigFileError
	if errors.As(err, &broken) {
		return http.StatusInternalServerError, msg, hint
	}
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return http.StatusInternalServerError, msg, hint
	}
	switch fault.KindOf(err) {
	case fault.Invalid:
		return http.StatusUnprocessableEntity, msg, hint
	case fault.Locked:
		return http.StatusServiceUnavailable, msg, hint
	case fault.NotFound:
		return http.StatusNotFound, msg, hint
	}
	return http.StatusConflict, msg, hint
}

// defaultHint is the hint of an error that came without one.
func defaultHint(status int) string {
	switch status {
	case http.StatusBadRequest:
		return hintJSON
	case http.StatusNotFound:
		return "GET /api/v1/mappings, /api/v1/dns-credentials and /api/v1/listeners list what exists"
	case http.StatusConflict:
		return "GET the resource to see its current state"
	case http.StatusUnprocessableEntity:
		return "fix the request; GET /api/v1/openapi.json describes every field"
	case http.StatusServiceUnavailable:
		return "retry in a few seconds"
	}
	return "see the log of 'p2ptls serve'"
}

// decode reads r's body, which must be one JSON object of application/json
// no larger than maxBodyBytes, into v, refusing unknown fields.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return badRequest("send the request as a JSON object", "the request body is empty")
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// noBody accepts a POST that takes no input: no body, or an empty JSON
// object. A body is held to the rules of decode.
func noBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, err := readBody(w, r)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	return decodeJSON(body, &struct{}{})
}

// readBody checks the content type and reads the body within the limit.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if mt, params, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" ||
		(params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		shown := ct
		if shown == "" {
			shown = "none"
		}
		return nil, &httpError{status: http.StatusUnsupportedMediaType,
			msg:  fmt.Sprintf("the request body must be JSON; its Content-Type is %s", shown),
			hint: "send 'Content-Type: application/json'"}
	}
	if r.ContentLength > maxBodyBytes {
		return nil, &http.MaxBytesError{Limit: maxBodyBytes}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, badRequest("send the whole body", "cannot read the request body: %v", err)
	}
	return body, nil
}

// hintJSON is the hint of every malformed request.
const hintJSON = "send one JSON object with the fields this endpoint documents"

// decodeJSON decodes exactly one JSON object into v, a pointer to a struct.
func decodeJSON(body []byte, v any) error {
	const hint = hintJSON
	if problem := strictjson.CheckKeys(body, strictjson.FieldsOf(v)); problem != "" {
		return badRequest(hint, "invalid JSON: %s", problem)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return badRequest(hint, "the request body is empty")
		case errors.As(err, &te) && te.Field != "":
			return badRequest(hint, "invalid JSON: field %q must be a JSON %s, not %s", te.Field, strictjson.Kind(te.Type.Kind()), te.Value)
		case errors.As(err, &te):
			return badRequest(hint, "invalid JSON: the body must be a JSON object, not %s", te.Value)
		}
		return badRequest(hint, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(hint, "invalid JSON: data after the JSON object")
	}
	return nil
}
