package management

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/state/admintoken"
)

// The web UI: Go templates and one small JavaScript file, embedded, with
// nothing loaded from elsewhere. Pages are shells; the JavaScript reads and
// changes everything through /api/v1 with the session cookie and, for
// changes, the session's CSRF token in X-CSRF-Token. The management TLS
// panel too comes from the API (GET /api/v1/management).

//go:embed ui
var uiFiles embed.FS

var uiTemplates = template.Must(template.ParseFS(uiFiles, "ui/*.html"))

const (
	sessionCookie   = "p2ptls_session"
	sessionLifetime = 12 * time.Hour
	csrfHeader      = "X-CSRF-Token"
	// uiCSP allows nothing but this server's own files.
	uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

// session is one signed-in browser. The admin token stays in memory only,
// to check on every request that it was not revoked since.
type session struct {
	name    string // the admin token's name
	token   string
	csrf    string
	expires time.Time
}

// sessions are the UI's sign-ins, in memory: a restart of serve signs
// everyone out.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(name, token string, now time.Time) (id string, se *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m { // forget expired sessions
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	id = randomID()
	se = &session{name: name, token: token, csrf: randomID(), expires: now.Add(sessionLifetime)}
	s.m[id] = se
	return id, se
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// lookup returns the request's session when its cookie names one that has
// not expired and whose admin token is still valid; a session whose token
// was revoked is forgotten.
func (s *sessions) lookup(o Options, r *http.Request) (string, *session) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", nil
	}
	s.mu.Lock()
	se, ok := s.m[c.Value]
	if ok && time.Now().After(se.expires) {
		delete(s.m, c.Value)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return "", nil
	}
	name, valid, err := admintoken.Verify(r.Context(), o.Store, se.token)
	if err != nil {
		o.Log.Error("cannot check admin tokens", "err", err)
		return "", nil
	}
	if !valid || name != se.name {
		s.remove(c.Value)
		return "", nil
	}
	return c.Value, se
}

// csrfOK reports whether the request carries the session's CSRF token in
// the header, or in the form field "csrf" for the UI's own forms.
func (se *session) csrfOK(r *http.Request) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" && r.Method == http.MethodPost && r.URL.Path == "/ui/logout" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(se.csrf)) == 1
}

// ui serves /ui/.
type ui struct {
	o        Options
	sessions *sessions
}

func (u *ui) register(mux *router) {
	mux.Handle("GET /ui/static/{file}", uiHeaders(http.HandlerFunc(staticFile)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusSeeOther) })
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusSeeOther) })
	mux.Handle("GET /ui/{$}", uiHeaders(http.HandlerFunc(u.page)))
	mux.Handle("GET /ui/login", uiHeaders(http.HandlerFunc(u.loginPage)))
	mux.Handle("POST /ui/login", uiHeaders(http.HandlerFunc(u.login)))
	mux.Handle("POST /ui/logout", uiHeaders(http.HandlerFunc(u.logout)))
}

// staticFiles are the files under /ui/static/. The HTML templates live in
// the same embedded directory but are served only rendered.
var staticFiles = map[string]bool{"app.js": true, "app.css": true}

func staticFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if !staticFiles[name] {
		http.NotFound(w, r)
		return
	}
	http.ServeFileFS(w, r, uiFiles, "ui/"+name)
}

// uiHeaders adds the security headers of every UI answer.
func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (u *ui) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := uiTemplates.ExecuteTemplate(w, name, data); err != nil {
		u.o.Log.Error("cannot render UI page", "page", name, "err", err)
	}
}

// loginMessages are the only messages the sign-in page shows: ?error=
// picks one by its code, and an unknown code shows none, so that a link
// cannot put its own words on this page.
var loginMessages = map[string]string{
	loginExpired: "Your session ended: it expired, serve restarted, or its admin token was revoked. Sign in again.",
	loginInvalid: "Invalid or revoked admin token. Create one with 'p2ptls admin token create NAME'.",
}

// Codes of loginMessages.
const (
	loginExpired = "expired"
	loginInvalid = "invalid"
)

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, se := u.sessions.lookup(u.o, r); se != nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	u.render(w, http.StatusOK, "login.html", map[string]string{"Error": loginMessages[r.URL.Query().Get("error")]})
}

// crossOrigin refuses a cross-site form post (login CSRF) by the standard
// library's rules: Sec-Fetch-Site from browsers that send it, else Origin
// against Host; a client that sends neither is not a browser, and no cookie
// of the user's rides along.
var crossOrigin = http.NewCrossOriginProtection()

// maxFormBytes bounds the body of the UI's forms (sign-in, sign-out): an
// admin token or a CSRF token.
const maxFormBytes = 64 << 10

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if crossOrigin.Check(r) != nil {
		writeJSON(w, http.StatusForbidden, apiError{Error: "cross-site sign-in refused", Hint: "sign in from the management UI itself"})
		return
	}
	// Parsed here, not by PostFormValue, so that a body too large or
	// malformed is said so instead of passing for a wrong token.
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("the sign-in form is larger than %d bytes", maxFormBytes),
				Hint: "send only the admin token"})
			return
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: "the sign-in form is not a valid form", Hint: "sign in from the management UI itself"})
		return
	}
	token := r.PostFormValue("token")
	name, ok, err := admintoken.Verify(r.Context(), u.o.Store, token)
	if err != nil {
		u.o.Log.Error("cannot check admin tokens", "err", err)
	}
	if !ok {
		u.o.Log.Info("UI sign-in refused", "remote", r.RemoteAddr)
		u.render(w, http.StatusUnauthorized, "login.html", map[string]string{"Error": loginMessages[loginInvalid]})
		return
	}
	id, se := u.sessions.create(name, token, time.Now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: se.expires,
		MaxAge: int(sessionLifetime / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	u.o.Log.Info("UI sign-in", "token", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	id, se := u.sessions.lookup(u.o, r)
	if se == nil {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	if !se.csrfOK(r) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "missing or wrong CSRF token", Hint: "sign out with the button of the UI"})
		return
	}
	u.sessions.remove(id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	u.o.Log.Info("UI sign-out", "token", se.name)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (u *ui) page(w http.ResponseWriter, r *http.Request) {
	_, se := u.sessions.lookup(u.o, r)
	if se == nil {
		to := "/ui/login"
		if _, err := r.Cookie(sessionCookie); err == nil {
			to += "?error=" + loginExpired
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	u.render(w, http.StatusOK, "index.html", map[string]any{"CSRF": se.csrf, "User": se.name})
}
