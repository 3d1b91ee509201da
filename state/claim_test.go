package state

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestTryClaimOneHolder: of many goroutines claiming one name at once,
// exactly one holds it at any time, on a Dir and on a store that is no
// Claimer; released, it can be taken again, and other names are free.
func TestTryClaimOneHolder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) Store
	}{
		{"dir", func(t *testing.T) Store { return OpenDir(t.TempDir(), time.Second) }},
		{"local", func(t *testing.T) Store { return &notClaimer{OpenDir(t.TempDir(), time.Second)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.store(t)
			ctx := context.Background()
			var holders, maxHolders, took atomic.Int32
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 50 {
						release, ok, err := ClaimLocal(ctx, s, "app")
						if err != nil {
							t.Error(err)
							return
						}
						if !ok {
							continue
						}
						took.Add(1)
						if n := holders.Add(1); n > maxHolders.Load() {
							maxHolders.Store(n)
						}
						time.Sleep(time.Millisecond)
						holders.Add(-1)
						release()
						release() // a second release is harmless
					}
				}()
			}
			wg.Wait()
			if maxHolders.Load() != 1 || took.Load() == 0 {
				t.Fatalf("at most %d holders at once, %d claims taken; want 1 and some", maxHolders.Load(), took.Load())
			}
			r1, ok1, _ := ClaimLocal(ctx, s, "app")
			r2, ok2, _ := ClaimLocal(ctx, s, "other")
			_, ok3, _ := ClaimLocal(ctx, s, "app")
			if !ok1 || !ok2 || ok3 {
				t.Errorf("claims app, other, app again: %v %v %v; want true true false", ok1, ok2, ok3)
			}
			r1()
			r2()
			if d, ok := s.(*Dir); ok {
				if left, _ := os.ReadDir(filepath.Join(d.Root(), ClaimsDir)); len(left) != 0 {
					t.Errorf("released claims left %d files", len(left))
				}
			}
		})
	}
}

// notClaimer hides Dir's TryClaim.
type notClaimer struct{ Store }

// TestTryClaimKilledHolder: a process killed while holding a claim frees
// it; while it lives, this process cannot take it.
func TestTryClaimKilledHolder(t *testing.T) {
	if root := os.Getenv("P2PTLS_TEST_CLAIM_HOLDER"); root != "" {
		if _, ok, err := OpenDir(root, time.Second).TryClaim(context.Background(), "app"); !ok || err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute) // killed here
		os.Exit(6)
	}
	root := t.TempDir()
	d := OpenDir(root, time.Second)
	cmd := exec.Command(os.Args[0], "-test.run=^TestTryClaimKilledHolder$")
	cmd.Env = append(os.Environ(), "P2PTLS_TEST_CLAIM_HOLDER="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("holder: %q, %v", buf, err)
	}
	if _, ok, err := d.TryClaim(context.Background(), "app"); ok || err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("claim held by another process taken: %v, %v", ok, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	release, ok, err := d.TryClaim(context.Background(), "app")
	if !ok || err != nil {
		t.Fatalf("claim of a killed holder: %v, %v; want it free", ok, err)
	}
	release()
}

// TestTryClaimOddNames: a name that is no safe file name is still one
// claim, hashed, inside run/claims.
func TestTryClaimOddNames(t *testing.T) {
	d := OpenDir(t.TempDir(), time.Second)
	ctx := context.Background()
	for _, name := range []string{"../escape", "a/b", "", ".hidden"} {
		release, ok, err := d.TryClaim(ctx, name)
		if !ok || err != nil {
			t.Fatalf("claim %q: %v, %v", name, ok, err)
		}
		if _, ok2, _ := d.TryClaim(ctx, name); ok2 {
			t.Errorf("claim %q taken twice", name)
		}
		entries, _ := os.ReadDir(filepath.Join(d.Root(), ClaimsDir))
		if len(entries) != 1 {
			t.Errorf("claim %q: %d files in %s, want 1", name, len(entries), ClaimsDir)
		}
		release()
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.Root()), "escape.lock")); err == nil {
		t.Error("a claim name escaped the state directory")
	}
}
