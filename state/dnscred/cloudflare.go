package dnscred

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/text"
)

// DefaultCloudflareBaseURL is the Cloudflare v4 API, the default of lego's
// Cloudflare provider (providers/dns/cloudflare/internal, defaultBaseURL),
// which issuance uses with the same api_base_url.
const DefaultCloudflareBaseURL = "https://api.cloudflare.com/client/v4"

// TestRecordLabel is the label of the TXT record Test creates in each zone
// and deletes again, to prove DNS:Edit.
const TestRecordLabel = "_p2ptls-test"

// apiTimeout bounds each request to the provider's API.
const apiTimeout = 15 * time.Second

// maxZones is how many zones Test reads (one page of Cloudflare's zone
// list) and checks DNS:Edit in.
const maxZones = 50

// maxBody bounds what is read of an API answer.
const maxBody = 4 << 20

// Check statuses, as "doctor" has them.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// Check ids of a TestResult.
const (
	CheckToken    = "token"     // the token is valid and active
	CheckZoneRead = "zone_read" // it can list zones (Zone:Read)
	CheckDNSEdit  = "dns_edit"  // it can create and delete a TXT record in Zone
)

// TestResult is what Test found; its JSON is what "dns-credential test
// --output json" prints.
type TestResult struct {
	Name       string   `json:"name"`
	Provider   string   `json:"provider"`
	APIBaseURL string   `json:"api_base_url"` // the endpoint used
	OK         bool     `json:"ok"`
	Zones      []string `json:"zones"` // the zones the token can read; never nil
	// TotalZones counts every zone the token can read; Zones holds the
	// first maxZones of them.
	TotalZones int     `json:"total_zones"`
	Checks     []Check `json:"checks"`
}

// Check is one step of a TestResult.
type Check struct {
	ID      string `json:"id"`
	Zone    string `json:"zone,omitempty"` // dns_edit: the zone checked
	Status  string `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Hints of failed checks.
const (
	hintNewToken = "create an API token on the API Tokens page of the Cloudflare dashboard with the permissions Zone:Read and DNS:Edit, " +
		"then save it with 'p2ptls dns-credential add NAME --replace --api-token-file F'"
	hintPermissions = "edit the token on the API Tokens page of the Cloudflare dashboard: give it Zone:Read and DNS:Edit " +
		"for the zones p2ptls issues certificates in"
	hintReach = "check the network and --api-base-url (the default is " + DefaultCloudflareBaseURL + ")"
)

// httpClient talks to the provider's API.
var httpClient = &http.Client{Timeout: apiTimeout}

// Test checks cred against the Cloudflare v4 API at cred.BaseURL(): the
// token is valid (GET /user/tokens/verify), can read zones (GET /zones:
// Zone:Read) and can edit DNS in each zone it reads (a TXT record
// _p2ptls-test.<zone> created and deleted again: DNS:Edit). It returns the
// result whenever it got to ask the API, and an error naming the first
// failed check, with its hint, when any check failed. The token appears in
// no message.
func Test(ctx context.Context, cred Credential) (*TestResult, error) {
	base, err := url.Parse(cred.BaseURL())
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fault.Invalidf("give an http:// or https:// URL", "DNS credential %q: api_base_url %q is not a URL with a host", cred.Name, cred.APIBaseURL)
	}
	c := &cfClient{base: base, token: cred.Token}
	res := &TestResult{Name: cred.Name, Provider: cred.Provider, APIBaseURL: base.Redacted(), Zones: []string{}, Checks: []Check{}}
	c.run(ctx, res)
	res.OK = true
	var failed []Check
	for _, ch := range res.Checks {
		if ch.Status == CheckFail {
			res.OK = false
			failed = append(failed, ch)
		}
	}
	if len(failed) == 0 {
		return res, nil
	}
	msg := failed[0].Message
	if failed[0].ID == CheckDNSEdit && len(failed) > 1 {
		msg += fmt.Sprintf(" (and %d more zone(s) failed)", len(failed)-1)
	}
	return res, fault.Failf(failed[0].Hint, "DNS credential %q: %s", cred.Name, msg)
}

// run adds the checks to res, stopping at the first one the others depend on.
func (c *cfClient) run(ctx context.Context, res *TestResult) {
	add := func(ch Check) { res.Checks = append(res.Checks, ch) }

	// The token. An account-owned token is not a user token: the user
	// endpoint rejects it, so the zone list has the last word.
	var verify struct {
		Status string `json:"status"`
	}
	verr := c.do(ctx, http.MethodGet, c.base.JoinPath("user", "tokens", "verify"), nil, &verify, nil)
	tokenCheck := Check{ID: CheckToken}
	var rejected *apiError
	switch {
	case verr == nil && verify.Status == "active":
		tokenCheck.Status, tokenCheck.Message = CheckOK, "the token is valid and active"
	case verr == nil:
		add(Check{ID: CheckToken, Status: CheckFail, Message: fmt.Sprintf("the token is not valid: its status is %q, not active", verify.Status), Hint: hintNewToken})
		return
	case isStatus(verr, http.StatusNotFound):
		tokenCheck.Status = CheckWarn
		tokenCheck.Message = "the API cannot verify tokens (GET /user/tokens/verify: " + verr.Error() + "); the zone list checks it instead"
	case isStatus(verr, http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest):
		errors.As(verr, &rejected)
	default:
		add(Check{ID: CheckToken, Status: CheckFail, Message: "cannot verify the token: " + verr.Error(), Hint: hintReach})
		return
	}

	// Zone:Read.
	var zones []cfZone
	info, zerr := c.zones(ctx, &zones)
	if rejected != nil {
		if zerr != nil {
			add(Check{ID: CheckToken, Status: CheckFail, Message: "the token is not valid: " + rejected.Error(), Hint: hintNewToken})
			return
		}
		tokenCheck.Status = CheckOK
		tokenCheck.Message = "the token works, though it is no user API token (an account-owned token?): " + rejected.Error()
	}
	add(tokenCheck)
	switch {
	case isStatus(zerr, http.StatusUnauthorized, http.StatusForbidden):
		add(Check{ID: CheckZoneRead, Status: CheckFail, Message: "the token lacks Zone:Read: " + zerr.Error(), Hint: hintPermissions})
		return
	case zerr != nil:
		add(Check{ID: CheckZoneRead, Status: CheckFail, Message: "cannot list the zones: " + zerr.Error(), Hint: hintReach})
		return
	case len(zones) == 0:
		add(Check{ID: CheckZoneRead, Status: CheckFail,
			Message: "the token lacks Zone:Read, or its zone resources include no zone: it can see no zone", Hint: hintPermissions})
		return
	}
	res.TotalZones = max(info.TotalCount, len(zones))
	zones = zones[:min(len(zones), maxZones)]
	for _, z := range zones {
		res.Zones = append(res.Zones, z.Name)
	}
	msg := fmt.Sprintf("the token can read %d zone(s): %s", res.TotalZones, strings.Join(res.Zones, ", "))
	if res.TotalZones > len(zones) {
		msg += fmt.Sprintf(" (the first %d are checked)", len(zones))
	}
	add(Check{ID: CheckZoneRead, Status: CheckOK, Message: msg})

	// DNS:Edit, zone by zone.
	for _, z := range zones {
		add(c.checkEdit(ctx, z))
	}
}

// checkEdit creates the TXT record TestRecordLabel.<zone> and deletes it.
func (c *cfClient) checkEdit(ctx context.Context, z cfZone) Check {
	ch := Check{ID: CheckDNSEdit, Zone: z.Name}
	fqdn := TestRecordLabel + "." + z.Name
	var nonce [8]byte
	rand.Read(nonce[:]) // never fails since Go 1.24
	rec := cfRecord{Type: "TXT", Name: fqdn, Content: `"p2ptls-test-` + hex.EncodeToString(nonce[:]) + `"`, TTL: 120}
	var created cfRecord
	err := c.do(ctx, http.MethodPost, c.base.JoinPath("zones", z.ID, "dns_records"), rec, &created, nil)
	switch {
	case isStatus(err, http.StatusUnauthorized, http.StatusForbidden):
		ch.Status, ch.Hint = CheckFail, hintPermissions
		ch.Message = fmt.Sprintf("the token lacks DNS:Edit for zone %s: %v", z.Name, err)
		return ch
	case err != nil:
		ch.Status, ch.Hint = CheckFail, hintReach
		ch.Message = fmt.Sprintf("cannot create a TXT record %s in zone %s: %v", fqdn, z.Name, err)
		return ch
	case created.ID == "":
		ch.Status, ch.Hint = CheckFail, "delete the record in the Cloudflare dashboard; the API at --api-base-url does not answer as Cloudflare's does"
		ch.Message = fmt.Sprintf("created the TXT record %s in zone %s, but the answer has no record id to delete it with", fqdn, z.Name)
		return ch
	}
	// Clean up even when ctx was cancelled meanwhile: a test record must not
	// stay behind because the user pressed Ctrl-C.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	if err := c.do(dctx, http.MethodDelete, c.base.JoinPath("zones", z.ID, "dns_records", created.ID), nil, nil, nil); err != nil {
		ch.Status = CheckFail
		ch.Hint = fmt.Sprintf("delete the TXT record %s (id %s) in the Cloudflare dashboard", fqdn, created.ID)
		ch.Message = fmt.Sprintf("created the TXT record %s in zone %s, but cannot delete it: %v", fqdn, z.Name, err)
		return ch
	}
	ch.Status = CheckOK
	ch.Message = fmt.Sprintf("created and deleted the TXT record %s", fqdn)
	return ch
}

// cfClient is the little of the Cloudflare v4 API that Test needs.
type cfClient struct {
	base  *url.URL
	token string
}

type cfZone struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type cfRecord struct {
	ID      string `json:"id,omitempty"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
	TTL     int    `json:"ttl"`
}

type cfResultInfo struct {
	TotalCount int `json:"total_count"`
}

// cfEnvelope is Cloudflare's answer around every result.
type cfEnvelope struct {
	Success    *bool           `json:"success"`
	Errors     []cfMessage     `json:"errors"`
	Result     json.RawMessage `json:"result"`
	ResultInfo *cfResultInfo   `json:"result_info"`
}

type cfMessage struct {
	Code       int         `json:"code"`
	Message    string      `json:"message"`
	ErrorChain []cfMessage `json:"error_chain"`
}

// zones reads the first page of the zone list.
func (c *cfClient) zones(ctx context.Context, out *[]cfZone) (cfResultInfo, error) {
	u := c.base.JoinPath("zones")
	u.RawQuery = url.Values{"per_page": {fmt.Sprint(maxZones)}}.Encode()
	var info cfResultInfo
	err := c.do(ctx, http.MethodGet, u, nil, out, &info)
	return info, err
}

// apiError is an answer that is not a success: its HTTP status and
// Cloudflare's error messages.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.msg)
}

// isStatus reports whether err is an API answer with one of codes.
func isStatus(err error, codes ...int) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.status == c {
			return true
		}
	}
	return false
}

// do sends one request and decodes the envelope's result into out (and its
// result_info into info), when they are not nil. Errors never contain the
// token, even if the server echoed it.
func (c *cfClient) do(ctx context.Context, method string, u *url.URL, body, out any, info *cfResultInfo) error {
	err := c.send(ctx, method, u, body, out, info)
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		ae.msg = c.redact(ae.msg)
		return ae
	}
	return errors.New(c.redact(err.Error()))
}

func (c *cfClient) send(ctx context.Context, method string, u *url.URL, body, out any, info *cfResultInfo) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "p2ptls")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		// url.Error quotes the URL, which holds no token.
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, u.Redacted(), err)
	}
	var env cfEnvelope
	jerr := json.Unmarshal(raw, &env)
	if resp.StatusCode/100 != 2 || (jerr == nil && env.Success != nil && !*env.Success) {
		ae := &apiError{status: resp.StatusCode}
		switch {
		case jerr == nil && len(env.Errors) > 0:
			ae.msg = messages(env.Errors)
		case jerr != nil:
			ae.msg = snippet(raw)
		}
		return ae
	}
	if jerr != nil {
		return fmt.Errorf("%s %s: the answer is not Cloudflare API JSON: %v", method, u.Redacted(), jerr)
	}
	if info != nil && env.ResultInfo != nil {
		*info = *env.ResultInfo
	}
	if out != nil && len(env.Result) > 0 && string(env.Result) != "null" {
		if err := json.Unmarshal(env.Result, out); err != nil {
			return fmt.Errorf("%s %s: unexpected result: %v", method, u.Redacted(), err)
		}
	}
	return nil
}

// messages joins Cloudflare's errors as "code: message; code: message".
func messages(list []cfMessage) string {
	var parts []string
	for _, m := range list {
		parts = append(parts, fmt.Sprintf("%d: %s", m.Code, m.Message))
		for _, e := range m.ErrorChain {
			parts = append(parts, fmt.Sprintf("%d: %s", e.Code, e.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// snippet is the start of a non-JSON answer, on one line.
func snippet(raw []byte) string {
	s := text.OneLine(string(raw))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// redact removes the token from a message, should a server echo it.
func (c *cfClient) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[token]")
}
