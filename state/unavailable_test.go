package state

import (
	"context"
	"errors"
	"testing"
)

func TestUnavailableFailsEveryCallWithItsError(t *testing.T) {
	why := errors.New("cannot reach etcd at 127.0.0.1:1")
	s := Unavailable(why)
	ctx := context.Background()
	if _, err := LoadConfig(ctx, s); !errors.Is(err, why) {
		t.Errorf("LoadConfig: %v, want %v", err, why)
	}
	if err := Update(ctx, s, "test", func(*Tx) error { t.Error("ran under no lock"); return nil }); !errors.Is(err, why) {
		t.Errorf("Update: %v, want %v", err, why)
	}
	if _, err := s.Revision(ctx); !errors.Is(err, why) {
		t.Errorf("Revision: %v", err)
	}
	if _, open := <-s.Watch(ctx); open {
		t.Error("Watch signalled")
	}
	if _, err := s.Replace(ctx, nil, ReplaceOptions{}); !errors.Is(err, why) {
		t.Errorf("Replace: %v", err)
	}
}
