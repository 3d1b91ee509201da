package hosttrust

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// fakeSystem is Debian's store with every directory of
// update-ca-certificates in a temporary one: a distribution CA listed in
// ca-certificates.conf, and a hook that records what it is told.
type fakeSystem struct {
	root, local, etc, hookLog string
	distro                    *x509.Certificate
}

func useFakeSystem(t *testing.T) *fakeSystem {
	t.Helper()
	tool := needTool(t, "update-ca-certificates", "ca-certificates")
	needTool(t, "openssl", "openssl") // update-ca-certificates runs 'openssl rehash'
	root := t.TempDir()
	f := &fakeSystem{root: root, local: filepath.Join(root, "local"), etc: filepath.Join(root, "etc"),
		hookLog: filepath.Join(root, "hook.log"), distro: newCA(t)}
	share, hooks := filepath.Join(root, "share"), filepath.Join(root, "hooks")
	for _, d := range []string{f.local, f.etc, share, hooks} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(root, "ca-certificates.conf")
	files := map[string]string{
		filepath.Join(share, "distro.crt"): string(pki.EncodeCert(f.distro.Raw)),
		conf:                               "distro.crt\n",
		filepath.Join(hooks, "record"):     "#!/bin/sh\ncat >> " + f.hookLog + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	saved, savedEUID := debian, geteuid
	debian = &systemStore{tool: tool, localDir: f.local, bundle: filepath.Join(f.etc, "ca-certificates.crt"),
		args: []string{"--certsconf", conf, "--certsdir", share, "--localcertsdir", f.local, "--etccertsdir", f.etc, "--hooksdir", hooks}}
	geteuid = func() int { return 0 }
	t.Cleanup(func() { debian, geteuid = saved, savedEUID })
	return f
}

// bundleHas reports which of certs the bundle holds.
func (f *fakeSystem) bundleHas(t *testing.T, certs ...*x509.Certificate) []bool {
	t.Helper()
	in, err := bundled(debian.bundle)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(certs))
	for i, c := range certs {
		out[i] = in[hexFingerprint(c)]
	}
	return out
}

func (f *fakeSystem) hooked(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.hookLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// etcLinks lists the links update-ca-certificates made for our CAs.
func (f *fakeSystem) etcLinks(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(f.etc, filePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSystemLifecycle runs the real update-ca-certificates on temporary
// directories: the bundle holds the CA after install, once however often
// it runs, the two CAs of a rotation, loses the retired one, and holds
// neither after uninstall; the distribution's CA stays throughout.
func TestSystemLifecycle(t *testing.T) {
	f := useFakeSystem(t)
	old, next := newCA(t), newCA(t)
	target := Target{System: true}

	res, err := Install(bg, &CAs{Current: []*x509.Certificate{old}}, target)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreSystem, f.local, fps(old), nil, nil)
	if got := f.bundleHas(t, old, f.distro); !got[0] || !got[1] {
		t.Fatalf("bundle holds CA, distro CA: %v", got)
	}
	fi, err := os.Stat(filepath.Join(f.local, FileName(old)))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("CA file: %v %v", fi, err)
	}
	if !strings.Contains(f.hooked(t), "+"+filepath.Join(f.etc, strings.TrimSuffix(FileName(old), ".crt")+".pem")) {
		t.Errorf("the hooks were not told of the CA: %q", f.hooked(t))
	}

	// Again: nothing to do, update-ca-certificates does not even run.
	hooks := f.hooked(t)
	if res, err = Install(bg, &CAs{Current: []*x509.Certificate{old}}, target); err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreSystem, f.local, nil, fps(old), nil)
	if f.hooked(t) != hooks {
		t.Error("a second install ran update-ca-certificates")
	}

	// A file whose update never ran (interrupted) is taken in again.
	if err := os.Remove(debian.bundle); err != nil {
		t.Fatal(err)
	}
	if res, err = Install(bg, &CAs{Current: []*x509.Certificate{old, next}}, target); err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreSystem, f.local, fps(old, next), nil, nil)
	if got := f.bundleHas(t, old, next, f.distro); !got[0] || !got[1] || !got[2] {
		t.Fatalf("bundle holds old, next, distro: %v", got)
	}

	// Finish: the retired CA leaves the bundle and /etc.
	if res, err = Install(bg, &CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}}, target); err != nil {
		t.Fatal(err)
	}
	checkResult(t, res[0], StoreSystem, f.local, nil, fps(next), fps(old))
	if got := f.bundleHas(t, old, next, f.distro); got[0] || !got[1] || !got[2] {
		t.Fatalf("bundle holds old, next, distro: %v", got)
	}
	if links := f.etcLinks(t); len(links) != 1 {
		t.Errorf("links of our CAs in etc: %v", links)
	}

	for i, want := range [][]string{fps(next), nil} {
		res, err = Uninstall(bg, &CAs{Current: []*x509.Certificate{next}, Retired: []*x509.Certificate{old}}, target)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, res[0], StoreSystem, f.local, nil, nil, want)
		if got := f.bundleHas(t, old, next, f.distro); got[0] || got[1] || !got[2] {
			t.Fatalf("uninstall %d: bundle holds old, next, distro: %v", i+1, got)
		}
		if links := f.etcLinks(t); len(links) != 0 {
			t.Errorf("uninstall %d: links of our CAs left in etc: %v", i+1, links)
		}
		if m, _ := filepath.Glob(filepath.Join(f.local, "*")); len(m) != 0 {
			t.Errorf("uninstall %d: files left: %v", i+1, m)
		}
	}
}

// TestSystemRefusals: not root, or no update-ca-certificates, is refused
// before any store changes, also an NSS database asked for with it.
func TestSystemRefusals(t *testing.T) {
	f := useFakeSystem(t)
	db := newNSSDB(t)
	ca := newCA(t)
	cases := []struct {
		desc  string
		setup func()
		says  []string
	}{
		{"not root", func() { geteuid = func() int { return 1000 } }, []string{"only root", "sudo"}},
		{"no update-ca-certificates", func() {
			saved := *debian
			debian = &saved
			debian.tool = filepath.Join(f.root, "no", "update-ca-certificates")
		}, []string{"update-ca-certificates", "is not installed", "apt-get install ca-certificates"}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			saved, savedEUID := debian, geteuid
			defer func() { debian, geteuid = saved, savedEUID }()
			tc.setup()
			_, err := Install(bg, &CAs{Current: []*x509.Certificate{ca}}, Target{System: true, NSSDBs: []string{db}})
			wantKind(t, err, fault.Failure, tc.says...)
			wantListed(t, db, map[string]string{})
			if m, _ := filepath.Glob(filepath.Join(f.local, "*")); len(m) != 0 {
				t.Errorf("files written: %v", m)
			}
		})
	}
	// A bad NSS directory stops the system store from changing too.
	_, err := Install(bg, &CAs{Current: []*x509.Certificate{ca}}, Target{System: true, NSSDBs: []string{filepath.Join(f.root, "nope")}})
	wantKind(t, err, fault.Invalid, "does not exist")
	if got := f.bundleHas(t, ca); got[0] {
		t.Error("the system store changed though the NSS database was refused")
	}
}
