package state

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"
)

// TestTxSeesItsOwnChange: reads, stats and lists inside Update see what
// the change wrote and deleted, deletes first as Apply makes them.
func TestTxSeesItsOwnChange(t *testing.T) {
	ctx := context.Background()
	d := OpenDir(t.TempDir(), time.Second)
	for name, data := range map[string]string{"certs/public/a/cert.pem": "old", "certs/public/a/meta.toml": "m", "certs/public/b/cert.pem": "b"} {
		if err := d.Write(ctx, name, []byte(data), SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	err := Update(ctx, d, "test", func(tx *Tx) error {
		steps := []struct {
			desc string
			do   func() error
		}{
			{"delete a", func() error { return tx.Delete(ctx, "certs/public/a") }},
			{"write a's cert again", func() error { return tx.Write(ctx, "certs/public/a/cert.pem", []byte("new"), SecretMode) }},
			{"write c", func() error { return tx.Write(ctx, "certs/public/c/cert.pem", []byte("c"), SecretMode) }},
		}
		for _, s := range steps {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.desc, err)
			}
		}
		checks := []struct {
			name string
			want string // "" for absent
		}{
			{"certs/public/a/cert.pem", "new"},
			{"certs/public/a/meta.toml", ""},
			{"certs/public/b/cert.pem", "b"},
			{"certs/public/c/cert.pem", "c"},
		}
		for _, c := range checks {
			b, err := tx.Read(ctx, c.name)
			_, serr := tx.Stat(ctx, c.name)
			if c.want == "" {
				if !errors.Is(err, fs.ErrNotExist) || !errors.Is(serr, fs.ErrNotExist) {
					t.Errorf("%s: read %q, %v; stat %v; want not found", c.name, b, err, serr)
				}
				continue
			}
			if string(b) != c.want || err != nil || serr != nil {
				t.Errorf("%s: read %q, %v; stat %v; want %q", c.name, b, err, serr, c.want)
			}
		}
		if got, err := tx.List(ctx, "certs/public"); err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Errorf("list certs/public = %q, %v", got, err)
		}
		if got, err := tx.List(ctx, "certs/public/a"); err != nil || !slices.Equal(got, []string{"cert.pem"}) {
			t.Errorf("list certs/public/a = %q, %v", got, err)
		}
		// Nothing is written before the change is committed.
		if b, _ := d.Read(ctx, "certs/public/a/cert.pem"); string(b) != "old" {
			t.Errorf("before commit the store holds %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"certs/public/a/cert.pem": "new", "certs/public/c/cert.pem": "c", "certs/public/b/cert.pem": "b"} {
		if b, err := d.Read(ctx, name); string(b) != want || err != nil {
			t.Errorf("after commit %s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := d.Stat(ctx, "certs/public/a/meta.toml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after commit meta.toml: %v, want deleted", err)
	}
	if _, err := d.Stat(ctx, ConfigFile); err != nil {
		t.Errorf("the config was not saved with the change: %v", err)
	}
}

// TestUpdateFailureWritesNothing: a failing fn, or a config that does not
// validate, commits none of the change's files.
func TestUpdateFailureWritesNothing(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		desc string
		fn   func(tx *Tx) error
	}{
		{"fn fails", func(tx *Tx) error {
			_ = tx.Write(ctx, "certs/public/x/cert.pem", []byte("x"), SecretMode)
			return errors.New("refused")
		}},
		{"config invalid", func(tx *Tx) error {
			_ = tx.Write(ctx, "certs/public/x/cert.pem", []byte("x"), SecretMode)
			tx.Config.Listeners = append(tx.Config.Listeners, Listener{Name: "bad name!"})
			return nil
		}},
		{"lock taken again", func(tx *Tx) error {
			_ = tx.Write(ctx, "certs/public/x/cert.pem", []byte("x"), SecretMode)
			_, err := tx.Lock(ctx, "again")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d := OpenDir(t.TempDir(), time.Second)
			if err := Update(ctx, d, "test", tc.fn); err == nil {
				t.Fatal("Update succeeded")
			}
			names, err := d.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(names, "certs") || slices.Contains(names, ConfigFile) {
				t.Errorf("a failed change wrote files: %q", names)
			}
		})
	}
}
