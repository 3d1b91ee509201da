package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/pki"
)

// needCertutil skips without certutil, except in CI (CI=true), where it
// fails: .ci/run installs libnss3-tools.
func needCertutil(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("certutil"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but certutil is missing (.ci/run installs libnss3-tools): %v", err)
		}
		t.Skip("certutil is missing: install libnss3-tools to run the trust store tests")
	}
}

// newNSSHome returns a home directory whose ~/.pki/nssdb is an empty NSS
// database, as Chromium makes it.
func newNSSHome(t *testing.T) (home, nssdb string) {
	t.Helper()
	needCertutil(t)
	home = t.TempDir()
	nssdb = filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(nssdb, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+nssdb, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v: %s", err, out)
	}
	return home, nssdb
}

// nssNicknames lists the nicknames in an NSS database.
func nssNicknames(t *testing.T, nssdb string) []string {
	t.Helper()
	out, err := exec.Command("certutil", "-L", "-d", "sql:"+nssdb).CombinedOutput()
	if err != nil {
		t.Fatalf("certutil -L: %v: %s", err, out)
	}
	var nicks []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.Contains(f[len(f)-1], ",") && !strings.HasPrefix(l, "Certificate Nickname") {
			nicks = append(nicks, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), f[len(f)-1])))
		}
	}
	slices.Sort(nicks)
	return nicks
}

// openInTrustingBrowser starts a new headless Chromium whose HOME is home
// (so that it reads home/.pki/nssdb) and which, unlike newBrowser's, checks
// certificates; it opens url and returns the page title, or the load
// error. The browser is gone when it returns.
func openInTrustingBrowser(t *testing.T, home, url string) (string, error) {
	t.Helper()
	// Unlike newBrowser's, it checks certificates, with home's NSS database.
	opts := append(chromiumOptions(t), chromedp.Env("HOME="+home))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	ctx, tcancel := context.WithTimeout(bctx, 30*time.Second)
	defer tcancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return "", err
	}
	return chromedp.Run(ctx, chromedp.Title())
}

// wantCertError checks that the browser refused the page for its
// certificate's issuer, not for anything else.
func wantCertError(t *testing.T, what, title string, err error) {
	t.Helper()
	var le *chromedp.LoadError
	if !errors.As(err, &le) || le.ErrorText != "net::ERR_CERT_AUTHORITY_INVALID" {
		t.Fatalf("%s: want net::ERR_CERT_AUTHORITY_INVALID, got title %q, error %v", what, title, err)
	}
}

// TestCATrustBrowser: headless Chromium, checking certificates, refuses
// management's UI until 'ca trust install' puts the CA into its NSS
// database, opens it then, and refuses it again after 'ca trust
// uninstall'.
func TestCATrustBrowser(t *testing.T) {
	home, nssdb := newNSSHome(t)
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr, "HOME=" + home}
	startServe(t, env)
	url := "https://localhost:" + addr[strings.LastIndex(addr, ":")+1:] + "/ui/"

	title, err := openInTrustingBrowser(t, home, url)
	wantCertError(t, "before install", title, err)

	r := p2ptls(t, env, "ca", "trust", "install", "--nss-db", nssdb)
	if r.code != 0 || !strings.Contains(r.stdout, "added the management CA") {
		t.Fatalf("ca trust install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	title, err = openInTrustingBrowser(t, home, url)
	if err != nil {
		t.Fatalf("after install: %v", err)
	}
	if title != "p2ptls – sign in" {
		t.Errorf("after install the page is %q, want the sign-in page", title)
	}

	r = p2ptls(t, env, "ca", "trust", "uninstall", "--nss-db", nssdb)
	if r.code != 0 || !strings.Contains(r.stdout, "removed the management CA") {
		t.Fatalf("ca trust uninstall: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	title, err = openInTrustingBrowser(t, home, url)
	wantCertError(t, "after uninstall", title, err)
}

// trustResult is the JSON of 'ca trust install|uninstall'.
type trustResult struct {
	Stores []struct {
		Store, Path             string
		Added, Present, Removed []string
	}
}

// TestCATrustCLI: the default store, idempotence, a replaced CA, and every
// refusal with its exit code, one sentence, and nothing changed — neither
// the state nor the database.
func TestCATrustCLI(t *testing.T) {
	home, nssdb := newNSSHome(t)
	dir := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + dir, "HOME=" + home}
	run := func(extra []string, args ...string) result {
		t.Helper()
		return p2ptls(t, append(append([]string{}, env...), extra...), append([]string{"ca", "trust"}, args...)...)
	}
	doc := func(r result) trustResult {
		t.Helper()
		var tr trustResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tr) != nil || len(tr.Stores) != 1 || tr.Stores[0].Path != nssdb || tr.Stores[0].Store != "nss" {
			t.Fatalf("exit %d, output %s%s", r.code, r.stdout, r.stderr)
		}
		return tr
	}

	// No CA yet: exit 1, pointing at ca init.
	if r := run(nil, "install"); r.code != 1 || !strings.Contains(r.stderr, "ca init") {
		t.Errorf("install without a CA: exit %d %s", r.code, r.stderr)
	}
	// Nor can uninstall tell which entries are this state's.
	if r := run(nil, "uninstall"); r.code != 1 || !strings.Contains(r.stderr, "holds no management CA, current or retired") {
		t.Errorf("uninstall without a CA: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refusals made the state directory: %v", err)
	}
	if r := p2ptls(t, env, "ca", "init"); r.code != 0 {
		t.Fatalf("ca init: %s", r.stderr)
	}
	var show struct {
		CA struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		}
	}
	if r := p2ptls(t, env, "ca", "show", "--output", "json"); json.Unmarshal([]byte(r.stdout), &show) != nil {
		t.Fatalf("ca show: %s", r.stdout)
	}
	first := show.CA.FingerprintSHA256
	if first == "" {
		t.Fatal("ca show gave no fingerprint")
	}

	before := snapshot(t, dir)
	refusals := []struct {
		desc  string
		env   []string
		args  []string
		code  int
		says  string
		hints string
	}{
		{"mode provided", []string{"MANAGEMENT_TLS_MODE=provided"}, []string{"install"}, 2, "mode provided", "MANAGEMENT_TLS_CERT_FILE"},
		{"mode off", nil, []string{"install", "--tls-mode", "off"}, 2, "mode off", "MANAGEMENT_TLS_MODE=auto"},
		{"no such database", nil, []string{"install", "--nss-db", filepath.Join(home, "nope")}, 2, "does not exist", "certutil -N"},
		{"not a database", nil, []string{"uninstall", "--nss-db", home}, 2, "holds no NSS database", "~/.pki/nssdb"},
		{"certutil missing", []string{"PATH=" + t.TempDir()}, []string{"install"}, 1, "certutil", "apt-get install libnss3-tools"},
		{"an argument", nil, []string{"install", "extra"}, 2, "takes no arguments", ""},
	}
	for _, tc := range refusals {
		t.Run(tc.desc, func(t *testing.T) {
			r := run(tc.env, tc.args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != tc.code || !strings.Contains(lines[0], tc.says) || !strings.Contains(r.stderr, tc.hints) || len(lines) > 2 || r.stdout != "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if got := nssNicknames(t, nssdb); len(got) != 0 {
				t.Errorf("database holds %v", got)
			}
		})
	}

	// No flag: Chromium's database under HOME. Twice is once.
	nick := func(fp string) string {
		return "p2ptls management CA " + strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	}
	if tr := doc(run(nil, "install", "--output", "json")); !slices.Equal(tr.Stores[0].Added, []string{first}) {
		t.Errorf("install: %+v", tr)
	}
	if tr := doc(run(nil, "install", "--output", "json")); len(tr.Stores[0].Added) != 0 || !slices.Equal(tr.Stores[0].Present, []string{first}) {
		t.Errorf("install again: %+v", tr)
	}
	if got := nssNicknames(t, nssdb); !slices.Equal(got, []string{nick(first)}) {
		t.Errorf("database holds %v", got)
	}
	assertSameSnapshot(t, before, snapshot(t, dir))

	// A replaced CA: install swaps it for the new one; after another
	// replace, uninstall removes the one installed though it is retired.
	if r := p2ptls(t, env, "ca", "init", "--replace", "--confirm-new-ca"); r.code != 0 {
		t.Fatalf("ca init --replace: %s", r.stderr)
	}
	if r := p2ptls(t, env, "ca", "show", "--output", "json"); json.Unmarshal([]byte(r.stdout), &show) != nil {
		t.Fatalf("ca show: %s", r.stdout)
	}
	second := show.CA.FingerprintSHA256
	if second == "" || second == first {
		t.Fatalf("ca show after a replace: fingerprint %q", second)
	}
	tr := doc(run(nil, "install", "--output", "json"))
	if !slices.Equal(tr.Stores[0].Added, []string{second}) || !slices.Equal(tr.Stores[0].Removed, []string{first}) {
		t.Errorf("install after a replace: %+v", tr)
	}
	if got := nssNicknames(t, nssdb); !slices.Equal(got, []string{nick(second)}) {
		t.Errorf("database holds %v", got)
	}
	if r := p2ptls(t, env, "ca", "init", "--replace", "--confirm-new-ca"); r.code != 0 {
		t.Fatalf("ca init --replace: %s", r.stderr)
	}
	if tr := doc(run(nil, "uninstall", "--output", "json")); !slices.Equal(tr.Stores[0].Removed, []string{second}) {
		t.Errorf("uninstall: %+v", tr)
	}
	if got := nssNicknames(t, nssdb); len(got) != 0 {
		t.Errorf("database holds %v after uninstall", got)
	}
	r := run(nil, "uninstall")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to remove") {
		t.Errorf("uninstall of nothing: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCATrustRotation: through a rotation the browser's database holds
// both CAs once start hands out the bundle, keeps them through switch
// (Chromium opens the UI served from the next CA), loses the old one at
// the install after finish (and still opens it), and uninstall removes the
// CA a later aborted rotation retired too.
func TestCATrustRotation(t *testing.T) {
	home, nssdb := newNSSHome(t)
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "HOME=" + home, "MANAGEMENT_LISTEN=" + addr}
	url := "https://localhost:" + addr[strings.LastIndex(addr, ":")+1:] + "/ui/"
	must := func(args ...string) string {
		t.Helper()
		r := p2ptls(t, env, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %v: exit %d %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	var st struct {
		Current struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"current"`
		Next *struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"next"`
	}
	status := func() (cur, next string) {
		t.Helper()
		st.Next = nil
		if err := json.Unmarshal([]byte(must("ca", "rotate", "status", "--output", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Next != nil {
			next = st.Next.FingerprintSHA256
		}
		return st.Current.FingerprintSHA256, next
	}
	nick := func(fp string) string {
		return "p2ptls management CA " + strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	}
	install := func() trustResult {
		t.Helper()
		var tr trustResult
		if err := json.Unmarshal([]byte(must("ca", "trust", "install", "--output", "json")), &tr); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	want := func(fps ...string) {
		t.Helper()
		var nicks []string
		for _, fp := range fps {
			nicks = append(nicks, nick(fp))
		}
		slices.Sort(nicks)
		if got := nssNicknames(t, nssdb); !slices.Equal(got, nicks) {
			t.Errorf("database holds %v, want %v", got, nicks)
		}
	}

	// servedFrom waits until serve presents a certificate issued by the
	// CA with fingerprint fp (it picks each step up live).
	servedFrom := func(fp string) {
		t.Helper()
		certs, err := pki.ParseCertChain([]byte(must("ca", "export")))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(certs, func(c *x509.Certificate) bool { return pki.Fingerprint(c) == fp })
		if i < 0 {
			t.Fatalf("ca export does not hold %s", fp)
		}
		pool := x509.NewCertPool()
		pool.AddCert(certs[i])
		eventually(t, 10*time.Second, func() error {
			leaf, err := handshake(addr, "localhost", pool)
			if err != nil {
				return err
			}
			return leaf.CheckSignatureFrom(certs[i])
		})
	}
	opens := func(what string) {
		t.Helper()
		title, err := openInTrustingBrowser(t, home, url)
		if err != nil || title != "p2ptls – sign in" {
			t.Errorf("%s: Chromium opened %q, error %v", what, title, err)
		}
	}

	must("ca", "init")
	startServe(t, env)
	install()
	must("ca", "rotate", "start")
	old, next := status()
	if old == "" || next == "" {
		t.Fatalf("rotation status: current %q next %q", old, next)
	}
	if tr := install(); !slices.Equal(tr.Stores[0].Added, []string{next}) || !slices.Equal(tr.Stores[0].Present, []string{old}) {
		t.Errorf("install after start: %+v", tr)
	}
	want(old, next)
	must("ca", "rotate", "switch")
	if tr := install(); len(tr.Stores[0].Added)+len(tr.Stores[0].Removed) != 0 {
		t.Errorf("install after switch: %+v", tr)
	}
	want(old, next)
	servedFrom(next)
	opens("switched")
	must("ca", "rotate", "finish")
	if tr := install(); !slices.Equal(tr.Stores[0].Present, []string{next}) || !slices.Equal(tr.Stores[0].Removed, []string{old}) {
		t.Errorf("install after finish: %+v", tr)
	}
	want(next)
	opens("finished, the old CA uninstalled")

	// A rotation begun, installed, then aborted: its next CA is retired,
	// and uninstall still knows it.
	must("ca", "rotate", "start")
	_, aborted := status()
	install()
	want(next, aborted)
	must("ca", "rotate", "abort")
	var tr trustResult
	if err := json.Unmarshal([]byte(must("ca", "trust", "uninstall", "--output", "json")), &tr); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(tr.Stores[0].Removed)); !slices.Equal(got, slices.Sorted(slices.Values([]string{next, aborted}))) {
		t.Errorf("uninstall after abort removed %v, want %s and %s", got, next, aborted)
	}
	want()
}
