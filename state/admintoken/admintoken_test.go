package admintoken

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

var (
	ctx = context.Background()
	t0  = time.Date(2025, 3, 4, 5, 6, 7, 890, time.FixedZone("X", 3600))
)

func open(t *testing.T) *state.Dir {
	t.Helper()
	return state.OpenDir(t.TempDir(), 5*time.Second)
}

func mustCreate(t *testing.T, s state.Store, name string) string {
	t.Helper()
	tok, err := Create(ctx, s, name, t0)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	return tok
}

func readFile(t *testing.T, d *state.Dir) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Root(), File))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	d := open(t)
	ci := mustCreate(t, d, "ci")
	ops := mustCreate(t, d, "ops")
	gone := mustCreate(t, d, "gone")
	if err := Revoke(ctx, d, "gone"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, token, name string
		ok                bool
	}{
		{"first token", ci, "ci", true},
		{"second token", ops, "ops", true},
		{"wrong token", Prefix + strings.Repeat("A", 43), "", false},
		{"token with a character changed", ci[:len(ci)-1] + "x", "", false},
		{"empty token", "", "", false},
		{"revoked token", gone, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			name, ok, err := Verify(ctx, d, tt.token)
			if err != nil || ok != tt.ok || name != tt.name {
				t.Errorf("Verify = %q, %v, %v; want %q, %v, nil", name, ok, err, tt.name, tt.ok)
			}
		})
	}
}

func TestTokenFormat(t *testing.T) {
	tok := mustCreate(t, open(t), "ci")
	rest, ok := strings.CutPrefix(tok, Prefix)
	if !ok || len(rest) != 43 || strings.ContainsAny(rest, "+/=") { // 32 bytes, raw URL base64
		t.Errorf("token %q is not %s + 43 base64url characters", tok, Prefix)
	}
	if other := mustCreate(t, open(t), "ci"); other == tok {
		t.Error("two creates gave the same token")
	}
}

func TestVerifyWithoutFile(t *testing.T) {
	if name, ok, err := Verify(ctx, open(t), Prefix+"x"); ok || name != "" || err != nil {
		t.Errorf("Verify on empty state = %q, %v, %v; want not ok, no error", name, ok, err)
	}
}

func TestFileModeAndNoTokenStored(t *testing.T) {
	d := open(t)
	tok := mustCreate(t, d, "ci")
	fi, err := os.Stat(filepath.Join(d.Root(), File))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != state.SecretMode {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), state.SecretMode)
	}
	b := readFile(t, d)
	raw := strings.TrimPrefix(tok, Prefix)
	if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(raw)) {
		t.Errorf("file contains the token:\n%s", b)
	}
}

func TestCreateRefusals(t *testing.T) {
	tests := []struct {
		desc     string
		existing []string
		name     string
		kind     fault.Kind
		msg      string
	}{
		{"duplicate name", []string{"ci"}, "ci", fault.Failure, `admin token "ci" already exists`},
		{"upper case and punctuation", nil, "Bad!", fault.Invalid, `admin token name "Bad!" is invalid`},
		{"empty name", nil, "", fault.Invalid, `admin token name "" is invalid`},
		{"invalid name next to others", []string{"ci"}, "a b", fault.Invalid, `admin token name "a b" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			d := open(t)
			for _, n := range tt.existing {
				mustCreate(t, d, n)
			}
			before, _ := os.ReadFile(filepath.Join(d.Root(), File))
			tok, err := Create(ctx, d, tt.name, t0)
			if err == nil || tok != "" || fault.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Create(%q) = %q, %v (kind %v); want kind %v error %q", tt.name, tok, err, fault.KindOf(err), tt.kind, tt.msg)
			}
			after, readErr := os.ReadFile(filepath.Join(d.Root(), File))
			if len(tt.existing) == 0 && !os.IsNotExist(readErr) {
				t.Errorf("refused Create wrote %s", File)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("refused Create changed the file:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestRevokeUnknown(t *testing.T) {
	d := open(t)
	mustCreate(t, d, "ci")
	err := Revoke(ctx, d, "nope")
	if err == nil || err.Error() != `admin token "nope" does not exist` || fault.HintOf(err) != "see 'p2ptls admin token list'" {
		t.Errorf("Revoke unknown = %v (hint %q)", err, fault.HintOf(err))
	}
}

func TestRevokeLastLeavesUsableFile(t *testing.T) {
	d := open(t)
	tok := mustCreate(t, d, "ci")
	if err := Revoke(ctx, d, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := Verify(ctx, d, tok); ok || err != nil {
		t.Errorf("Verify after revoke = %v, %v", ok, err)
	}
	if infos, err := List(ctx, d); err != nil || len(infos) != 0 {
		t.Errorf("List after revoking all = %v, %v", infos, err)
	}
	mustCreate(t, d, "ci") // the name is free again
}

func TestList(t *testing.T) {
	d := open(t)
	if infos, err := List(ctx, d); err != nil || infos == nil || len(infos) != 0 {
		t.Fatalf("List on empty state = %#v, %v; want empty non-nil", infos, err)
	}
	for i, n := range []string{"ops", "ci", "backup"} {
		if _, err := Create(ctx, d, n, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := List(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{"backup", t0.Add(2 * time.Hour)},
		{"ci", t0.Add(time.Hour)},
		{"ops", t0},
	}
	if len(infos) != len(want) {
		t.Fatalf("List = %v, want %v", infos, want)
	}
	for i, w := range want {
		wantTime := w.CreatedAt.UTC().Truncate(time.Second)
		if infos[i].Name != w.Name || !infos[i].CreatedAt.Equal(wantTime) {
			t.Errorf("List[%d] = %v, want %s at %v", i, infos[i], w.Name, wantTime)
		}
	}
}

func TestConcurrentCreates(t *testing.T) {
	root := t.TempDir()
	names := []string{"a", "b", "c", "d"}
	tokens := make([]string, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			// A store per goroutine, like separate processes.
			tokens[i], errs[i] = Create(ctx, state.OpenDir(root, 10*time.Second), n, t0)
		})
	}
	wg.Wait()
	d := state.OpenDir(root, time.Second)
	for i, n := range names {
		if errs[i] != nil {
			t.Fatalf("Create(%q): %v", n, errs[i])
		}
		if name, ok, err := Verify(ctx, d, tokens[i]); !ok || name != n || err != nil {
			t.Errorf("Verify(token of %q) = %q, %v, %v", n, name, ok, err)
		}
	}
	if infos, err := List(ctx, d); err != nil || len(infos) != len(names) {
		t.Errorf("List = %v, %v; want %d tokens", infos, err, len(names))
	}
}

func TestCorruptFile(t *testing.T) {
	const hash = "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		desc, content, msg string
	}{
		{"not TOML", "[[tokens]\nname = \"ci\"\n", "line 1"},
		{"unknown field", "[[tokens]]\nname = \"ci\"\nsha256 = \"" + hash + "\"\ncreated_at = 2025-01-01T00:00:00Z\ntoken = \"p2ptls_x\"\n", `line 5: unknown field "tokens.token"`},
		{"wrong type", "tokens = 3\n", "line 1"},
		{"short hash", "[[tokens]]\nname = \"ci\"\nsha256 = \"abcd\"\ncreated_at = 2025-01-01T00:00:00Z\n", "sha256 is not 64 hexadecimal digits"},
		{"bad name", "[[tokens]]\nname = \"CI\"\nsha256 = \"" + hash + "\"\ncreated_at = 2025-01-01T00:00:00Z\n", `admin token name "CI" is invalid`},
		{"missing created_at", "[[tokens]]\nname = \"ci\"\nsha256 = \"" + hash + "\"\n", "created_at is missing"},
		{"duplicate name", strings.Repeat("[[tokens]]\nname = \"ci\"\nsha256 = \""+hash+"\"\ncreated_at = 2025-01-01T00:00:00Z\n", 2), `token 2: name "ci" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			d := open(t)
			if err := d.Write(ctx, File, []byte(tt.content), state.SecretMode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(d.Root(), File)
			check := func(op string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.msg) ||
					!strings.Contains(fault.HintOf(err), "remove it") {
					t.Errorf("%s: error %v (hint %q); want one naming %s with %q and a fix-or-remove hint", op, err, fault.HintOf(err), path, tt.msg)
				}
			}
			tok, err := Create(ctx, d, "new", t0)
			if tok != "" {
				t.Error("Create returned a token")
			}
			check("Create", err)
			check("Revoke", Revoke(ctx, d, "ci"))
			_, err = List(ctx, d)
			check("List", err)
			_, ok, err := Verify(ctx, d, Prefix+"x")
			if ok {
				t.Error("Verify ok on a corrupt file")
			}
			check("Verify", err)
			if got := readFile(t, d); string(got) != tt.content {
				t.Errorf("file changed:\n%s", got)
			}
		})
	}
}
