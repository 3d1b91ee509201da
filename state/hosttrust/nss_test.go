package hosttrust

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
)

// newNSSDB creates an empty sql: database as Chromium's (no password).
func newNSSDB(t *testing.T) string {
	t.Helper()
	certutil := needTool(t, "certutil", "libnss3-tools")
	dir := filepath.Join(t.TempDir(), "nssdb")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(certutil, "-N", "-d", "sql:"+dir, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v: %s", err, out)
	}
	return dir
}

// listed is what 'certutil -L' shows: nickname → trust attributes.
func listed(t *testing.T, dir string) map[string]string {
	t.Helper()
	out, err := exec.Command("certutil", "-L", "-d", "sql:"+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("certutil -L: %v: %s", err, out)
	}
	line := regexp.MustCompile(`^(.*\S)\s+(\S*,\S*,\S*)\s*$`)
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if m := line.FindStringSubmatch(l); m != nil && m[1] != "Certificate Nickname" {
			got[m[1]] = m[2]
		}
	}
	return got
}

// addByHand puts c into the database as an operator would.
func addByHand(t *testing.T, dir, nick, trust string, c *x509.Certificate) {
	t.Helper()
	cmd := exec.Command("certutil", "-A", "-d", "sql:"+dir, "-n", nick, "-t", trust)
	cmd.Stdin = strings.NewReader(string(c.Raw))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("certutil -A: %v: %s", err, out)
	}
}

func wantListed(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := listed(t, dir)
	if len(got) != len(want) {
		t.Errorf("database holds %v, want %v", got, want)
	}
	for nick, trust := range want {
		if got[nick] != trust {
			t.Errorf("%s: trust %q, want %q (database: %v)", nick, got[nick], trust, got)
		}
	}
}

// TestNSSLifecycle installs, re-installs, rotates and uninstalls in a real
// certutil database that also holds another installation's CA and an
// unrelated one, which are never touched.
func TestNSSLifecycle(t *testing.T) {
	dir := newNSSDB(t)
	old, next, other, unrelated := newCA(t), newCA(t), newCA(t), newCA(t)
	addByHand(t, dir, Nickname(other), "C,,", other) // another installation's
	addByHand(t, dir, "corp root", "CT,C,C", unrelated)
	theirs := map[string]string{Nickname(other): "C,,", "corp root": "CT,C,C"}
	with := func(m map[string]string) map[string]string {
		for k, v := range theirs {
			m[k] = v
		}
		return m
	}
	target := Target{NSSDBs: []string{dir}}
	steps := []struct {
		desc                    string
		uninstall               bool
		cas                     CAs
		added, present, removed []string
		want                    map[string]string
	}{
		{desc: "install the CA", cas: CAs{Current: []*x509.Certificate{old}},
			added: fps(old), want: with(map[string]string{Nickname(old): "C,,"})},
		{desc: "install again changes nothing", cas: CAs{Current: []*x509.Certificate{old}},
			present: fps(old), want: with(map[string]string{Nickname(old): "C,,"})},
		{desc: "the two-CA bundle of a rotation", cas: CAs{Current: []*x509.Certificate{old, next}},
			added: fps(next), present: fps(old), want: with(map[string]string{Nickname(old): "C,,", Nickname(next): "C,,"})},
		{desc: "after finish the retired CA goes", cas: CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}},
			present: fps(next), removed: fps(old), want: with(map[string]string{Nickname(next): "C,,"})},
		{desc: "uninstall", uninstall: true, cas: CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}},
			removed: fps(next), want: with(map[string]string{})},
		{desc: "uninstall of what is not there", uninstall: true, cas: CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}},
			want: with(map[string]string{})},
	}
	for _, st := range steps {
		t.Run(st.desc, func(t *testing.T) {
			do := Install
			if st.uninstall {
				do = Uninstall
			}
			res, err := do(bg, &st.cas, target)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 {
				t.Fatalf("results %+v", res)
			}
			checkResult(t, res[0], StoreNSS, dir, st.added, st.present, st.removed)
			wantListed(t, dir, st.want)
		})
	}
}

// TestNSSUninstallRetiredOnly: uninstall also removes a CA the state
// retired since it was installed (the browser trusted the old CA, then a
// rotation finished).
func TestNSSUninstallRetiredOnly(t *testing.T) {
	dir := newNSSDB(t)
	old, next := newCA(t), newCA(t)
	target := Target{NSSDBs: []string{"sql:" + dir}} // certutil's spelling works too
	if _, err := Install(bg, &CAs{Current: []*x509.Certificate{old}}, target); err != nil {
		t.Fatal(err)
	}
	res, err := Uninstall(bg, &CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}}, target)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreNSS, dir, nil, nil, fps(old))
	wantListed(t, dir, map[string]string{})
}

// TestNSSTrustRestored: an entry of ours whose trust was taken away is
// trusted again by install, and removed by uninstall.
func TestNSSTrustRestored(t *testing.T) {
	dir := newNSSDB(t)
	ca := newCA(t)
	addByHand(t, dir, Nickname(ca), ",,", ca)
	cas := &CAs{Current: []*x509.Certificate{ca}}
	res, err := Install(bg, cas, Target{NSSDBs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreNSS, dir, fps(ca), nil, nil)
	wantListed(t, dir, map[string]string{Nickname(ca): "C,,"})
	addByHand(t, dir, Nickname(ca), ",,", ca) // untrusted again
	if res, err = Uninstall(bg, cas, Target{NSSDBs: []string{dir}}); err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreNSS, dir, nil, nil, fps(ca))
	wantListed(t, dir, map[string]string{})
}

// TestNSSRefusals: what cannot be changed is refused with its exit class
// and a fix, and no database is changed.
func TestNSSRefusals(t *testing.T) {
	good := newNSSDB(t)
	file := filepath.Join(t.TempDir(), "file")
	empty := t.TempDir()
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t)
	cases := []struct {
		desc string
		dirs []string
		kind fault.Kind
		says []string
	}{
		{"missing directory", []string{good, filepath.Join(empty, "nope")}, fault.Invalid, []string{"does not exist", "certutil -N"}},
		{"not a directory", []string{good, file}, fault.Invalid, []string{"is not a directory"}},
		{"no database in it", []string{good, empty}, fault.Invalid, []string{"holds no NSS database (cert9.db)"}},
		{"empty name", []string{""}, fault.Invalid, []string{"--nss-db is empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Install(bg, &CAs{Current: []*x509.Certificate{ca}}, Target{NSSDBs: tc.dirs})
			wantKind(t, err, tc.kind, tc.says...)
			wantListed(t, good, map[string]string{})
			if entries, _ := os.ReadDir(empty); len(entries) != 0 {
				t.Errorf("a database was made in %s", empty)
			}
		})
	}
	t.Run("certutil missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := Install(bg, &CAs{Current: []*x509.Certificate{ca}}, Target{NSSDBs: []string{good}})
		wantKind(t, err, fault.Failure, "certutil", "apt-get install libnss3-tools")
	})
	wantListed(t, good, map[string]string{})
}

// TestNSSPassword: a database protected by a password is refused at once
// (certutil is never left waiting for one) and keeps no half-added entry.
func TestNSSPassword(t *testing.T) {
	needTool(t, "certutil", "libnss3-tools")
	dir := filepath.Join(t.TempDir(), "nssdb")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+dir, "-f", pw).CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v: %s", err, out)
	}
	_, err := Install(bg, &CAs{Current: []*x509.Certificate{newCA(t)}}, Target{NSSDBs: []string{dir}})
	wantKind(t, err, fault.Failure, "protected by a password", "certutil -W")
	wantListed(t, dir, map[string]string{})
}

// TestNSSOtherNickname: the CA added by hand under another nickname keeps
// it (NSS has one per certificate), so install says so instead of
// claiming an entry uninstall would not find.
func TestNSSOtherNickname(t *testing.T) {
	dir := newNSSDB(t)
	ca := newCA(t)
	addByHand(t, dir, "my mgmt ca", "C,,", ca)
	_, err := Install(bg, &CAs{Current: []*x509.Certificate{ca}}, Target{NSSDBs: []string{dir}})
	wantKind(t, err, fault.Failure, "under another nickname", "certutil -D")
	wantListed(t, dir, map[string]string{"my mgmt ca": "C,,"})
}
