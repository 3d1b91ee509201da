package etcdstore

import (
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t)
	statetest.Conformance(t, func(t *testing.T) state.Store {
		return openTest(t, c, newPrefix("conformance"))
	})
}
