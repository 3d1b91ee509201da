package statetest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

func TestConformanceDir(t *testing.T) {
	Conformance(t, func(t *testing.T) state.Store {
		return state.OpenDir(filepath.Join(t.TempDir(), "state"), 300*time.Millisecond)
	})
}

func TestConformanceMem(t *testing.T) {
	Conformance(t, func(t *testing.T) state.Store { return NewMem("mem", 300*time.Millisecond) })
}
