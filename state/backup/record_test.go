package backup

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestRecordOfTheLastBackup(t *testing.T) {
	d := newState(t, true, "web")
	if r, err := ReadRecord(context.Background(), d); r != nil || err != nil {
		t.Fatalf("before any backup: %+v, %v", r, err)
	}

	// A refused backup records nothing.
	if _, err := CreateFile(context.Background(), d, filepath.Join(d.Root(), "in.tar.gz"), CreateOptions{Now: now0}); err == nil {
		t.Fatal("a backup into the state directory was accepted")
	}
	if r, _ := ReadRecord(context.Background(), d); r != nil {
		t.Fatalf("a refused backup was recorded: %+v", r)
	}

	// To a writer (standard output): no file name.
	var buf bytes.Buffer
	m, err := Create(context.Background(), d, &buf, CreateOptions{Version: "v-test", Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadRecord(context.Background(), d)
	if err != nil || r == nil {
		t.Fatalf("record: %+v, %v", r, err)
	}
	if !r.CreatedAt.Equal(now0) || r.CAFingerprintSHA256 != m.CAFingerprintSHA256 || r.CAFingerprintSHA256 == "" || r.File != "" || r.Encrypted || r.Files != len(m.Files) || r.P2PTLSVersion != "v-test" {
		t.Errorf("record after Create: %+v", r)
	}
	// The record is no state: the next archive leaves it out.
	buf.Reset()
	if _, err := Create(context.Background(), d, &buf, CreateOptions{Version: "v-test", Now: now0}); err != nil {
		t.Fatal(err)
	}
	got, _ := unpack(t, buf.Bytes())
	for _, f := range got.Files {
		if f.Path == RecordFile {
			t.Errorf("the backup holds its own record %s", f.Path)
		}
	}

	// To a file: its absolute path, encrypted, the newest one wins.
	later := now0.Add(time.Hour)
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if _, err := CreateFile(context.Background(), d, out, CreateOptions{Passphrase: "pw", Now: later}); err != nil {
		t.Fatal(err)
	}
	if r, err = ReadRecord(context.Background(), d); err != nil || r.File != out || !r.Encrypted || !r.CreatedAt.Equal(later) {
		t.Errorf("record after CreateFile: %+v, %v", r, err)
	}
}
