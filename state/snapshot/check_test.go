package snapshot_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// A record from the primary that does not load with the rest (a host
// another mapping has, TOML that does not parse, …) is refused by the
// sync of that record with LoadConfig's own words, as a whole check
// refuses it: the copy keeps the last good state, and takes the record
// once it is fixed.
func TestBadRecordChangeIsRefused(t *testing.T) {
	selfSigned := "listener = \"web\"\nsource = \"self-signed\"\n"
	for _, tc := range []struct {
		desc, name, data string
	}{
		{"a host another mapping has", state.RecordName("c"), "id = \"c\"\n" + selfSigned + "hosts = [\"A.example.com\"]\n"},
		{"unparsable TOML", state.RecordName("b"), "id = \"b\"\nhosts = [\n"},
		{"a listener that does not exist", state.RecordName("b"), "id = \"b\"\nlistener = \"nope\"\nsource = \"self-signed\"\nhosts = [\"b.example.com\"]\n"},
		{"an id that is not the file's", state.RecordName("b"), "id = \"c\"\n" + selfSigned + "hosts = [\"b.example.com\"]\n"},
		{"a record file named for no id", state.RecordsDir + "/Not An Id.toml", "id = \"x\"\n" + selfSigned + "hosts = [\"x.example.com\"]\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ctx := context.Background()
			p := newMemPrimary() // names its changes, as etcd's feed does
			seed(t, p, "127.0.0.1:8443", "a", "b")
			dir := filepath.Join(t.TempDir(), "snapshot")
			s := open(t, p, dir)
			eventually(t, "the first copy", func() bool { return s.Health().Current })
			before := content(t, dir)

			if err := p.backend.Write(ctx, tc.name, []byte(tc.data), state.SecretMode); err != nil {
				t.Fatal(err)
			}
			_, loadErr := state.LoadConfig(ctx, p)
			if loadErr == nil {
				t.Fatal("the bad record loads")
			}
			want := "the state of " + source + " does not load: " + strings.Join(strings.Fields(loadErr.Error()), " ")
			eventually(t, "the refusal shows in health", func() bool { return strings.Contains(s.Health().Error, want) })
			if h := s.Health(); !h.Connected || h.Current {
				t.Errorf("health with the record refused = %+v", h)
			}
			statetest.AssertSame(t, before, content(t, dir))
			if ids := mappingIDs(t, state.OpenDir(dir, 0)); strings.Join(ids, ",") != "a,b" {
				t.Errorf("mappings in the copy = %v, want a,b", ids)
			}

			if err := p.backend.Delete(ctx, tc.name); err != nil {
				t.Fatal(err)
			}
			addMapping(t, p, "fixed")
			eventually(t, "the copy is current again", func() bool {
				return s.Health().Current && sameContent(t, p, dir)
			})
		})
	}
}
