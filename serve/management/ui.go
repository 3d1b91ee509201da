package management

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/serve/agent"
	"github.com/p2pstream/p2ptls/state/admintoken"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// The web UI: Go templates and one small JavaScript file, embedded, with
// nothing loaded from elsewhere. Pages are shells; the JavaScript reads and
// changes everything through /api/v1 with the session cookie and, for
// changes, the session's CSRF token in X-CSRF-Token. Only the management
// TLS section is rendered here, from the same state code as "ca show" and
// "agent env" (the API has no endpoint for it).

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
	name, valid, err := admintoken.Verify(o.Store, se.token)
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

func (u *ui) register(mux *http.ServeMux) {
	static, _ := fs.Sub(uiFiles, "ui")
	files := http.FileServerFS(static)
	mux.Handle("GET /ui/static/", uiHeaders(http.StripPrefix("/ui/static/", files)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusSeeOther) })
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusSeeOther) })
	mux.Handle("GET /ui/{$}", uiHeaders(http.HandlerFunc(u.page)))
	mux.Handle("GET /ui/login", uiHeaders(http.HandlerFunc(u.loginPage)))
	mux.Handle("POST /ui/login", uiHeaders(http.HandlerFunc(u.login)))
	mux.Handle("POST /ui/logout", uiHeaders(http.HandlerFunc(u.logout)))
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

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, se := u.sessions.lookup(u.o, r); se != nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	u.render(w, http.StatusOK, "login.html", map[string]string{"Error": r.URL.Query().Get("error")})
}

// sameOrigin refuses a cross-site form post (login CSRF). Browsers send
// Sec-Fetch-Site, older ones at least Origin; a client that sends neither
// is not a browser, and no cookie of the user's rides along.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	return err == nil && o.Host == r.Host
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, apiError{Error: "cross-site sign-in refused", Hint: "sign in from the management UI itself"})
		return
	}
	token := r.PostFormValue("token")
	name, ok, err := admintoken.Verify(u.o.Store, token)
	if err != nil {
		u.o.Log.Error("cannot check admin tokens", "err", err)
	}
	if !ok {
		u.o.Log.Info("UI sign-in refused", "remote", r.RemoteAddr)
		u.render(w, http.StatusUnauthorized, "login.html", map[string]string{
			"Error": "Invalid or revoked admin token. Create one with 'p2ptls admin token create NAME'."})
		return
	}
	id, se := u.sessions.create(name, token, time.Now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: se.expires,
		MaxAge: int(sessionLifetime / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	u.o.Log.Info("UI sign-in", "token", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
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

// mgmtView is the management TLS section of the page.
type mgmtView struct {
	Info     *statemgmt.Info
	Error    string
	EnvLines []string
	EnvError string
	NoURL    bool
}

func (u *ui) page(w http.ResponseWriter, r *http.Request) {
	_, se := u.sessions.lookup(u.o, r)
	if se == nil {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	var mv mgmtView
	root := ""
	if u.o.Store != nil {
		root = u.o.Store.Root()
	}
	info, err := statemgmt.Show(u.o.Store, root, u.o.Settings)
	if err != nil {
		mv.Error = err.Error()
	}
	mv.Info = info
	if caPEM, err := statemgmt.AgentCA(u.o.Store, u.o.Settings); err != nil {
		mv.EnvError = err.Error()
	} else {
		mv.EnvLines = agent.EnvLines(u.o.Settings.PublicURL, caPEM)
		mv.NoURL = u.o.Settings.PublicURL == ""
	}
	u.render(w, http.StatusOK, "index.html", map[string]any{"CSRF": se.csrf, "User": se.name, "Mgmt": mv})
}
