package state

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
)

// encodedState is the files of c's state, by store name.
func encodedState(t *testing.T, c *Config) fileSet {
	t.Helper()
	files := fileSet{}
	top, err := encodeConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	files[ConfigFile] = top
	for i := range c.Mappings {
		b, err := encodeRecord(&c.Mappings[i])
		if err != nil {
			t.Fatal(err)
		}
		files[RecordName(c.Mappings[i].ID)] = b
	}
	return files
}

func record(id, rest string) []byte { return fmt.Appendf(nil, "id = %q\n%s", id, rest) }

// LoadChanged gives exactly LoadConfig's answer, config or error, for any
// change of records, and for changes it leaves to LoadConfig.
func TestLoadChangedAgreesWithLoadConfig(t *testing.T) {
	ctx := context.Background()
	base := encodedState(t, validBase(t, 40))
	// Left to LoadConfig, which reads every record.
	full := map[string]bool{"p2ptls.toml changed too": true, "the records directory removed": true}
	selfSigned := "listener = \"web\"\nsource = \"self-signed\"\n"
	for _, tc := range []struct {
		desc   string
		writes map[string][]byte
		remove []string
	}{
		{"a record changed", map[string][]byte{RecordName("m003"): record("m003", "listener = \"api\"\nhosts = [\"m003.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:8080\"\n")}, nil},
		{"a record added", map[string][]byte{RecordName("new"): record("new", selfSigned+"hosts = [\"New.Example.COM\"]\n")}, nil},
		{"a record removed", nil, []string{RecordName("m004")}},
		{"a record removed that was never there", nil, []string{RecordName("gone"), RecordsDir + "/Not An Id.toml"}},
		{"two records swap their hosts", map[string][]byte{
			RecordName("m000"): record("m000", selfSigned+"hosts = [\"m010.example.com\"]\n"),
			RecordName("m010"): record("m010", selfSigned+"hosts = [\"m000.example.com\"]\n"),
		}, nil},
		{"a host another record has", map[string][]byte{RecordName("new"): record("new", selfSigned+"hosts = [\"M000.example.com\"]\n")}, nil},
		{"a host the removed record had", map[string][]byte{RecordName("new"): record("new", selfSigned+"hosts = [\"m000.example.com\"]\n")}, []string{RecordName("m000")}},
		{"unparsable TOML", map[string][]byte{RecordName("m005"): []byte("id = \"m005\"\nhosts = [\n")}, nil},
		{"an unknown field", map[string][]byte{RecordName("m005"): record("m005", selfSigned+"hosts = [\"m005.example.com\"]\ncolour = \"red\"\n")}, nil},
		{"an id that is not the file's", map[string][]byte{RecordName("m005"): record("m006", selfSigned+"hosts = [\"x.example.com\"]\n")}, nil},
		{"a listener that does not exist", map[string][]byte{RecordName("m005"): record("m005", "listener = \"nope\"\nsource = \"self-signed\"\nhosts = [\"m005.example.com\"]\n")}, nil},
		{"a DNS credential that does not exist", map[string][]byte{RecordName("m002"): record("m002", "listener = \"web\"\nhosts = [\"*.dns.example.com\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"nope\"\n")}, nil},
		{"a record file named for no id", map[string][]byte{RecordsDir + "/Not An Id.toml": record("x", selfSigned+"hosts = [\"x.example.com\"]\n")}, nil},
		{"an editor's file beside the records", map[string][]byte{RecordsDir + "/.m003.toml.swp": []byte("junk")}, nil},
		{"p2ptls.toml changed too", map[string][]byte{
			ConfigFile:         []byte("schema_version = 2\n[[listeners]]\nname = \"web\"\naddr = \"127.0.0.1:8443\"\n"),
			RecordName("m007"): record("m007", "listener = \"api\"\nsource = \"self-signed\"\nhosts = [\"m007.example.com\"]\n"),
		}, nil},
		{"the records directory removed", nil, []string{RecordsDir}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := LoadConfig(ctx, base)
			if err != nil {
				t.Fatal(err)
			}
			before := cloneMappings(c.Mappings)
			files := maps.Clone(base)
			var names []string
			for _, n := range tc.remove {
				for f := range files {
					if f == n || len(f) > len(n) && f[:len(n)+1] == n+"/" {
						delete(files, f)
					}
				}
				names = append(names, n)
			}
			for n, b := range tc.writes {
				files[n] = b
				names = append(names, n)
			}
			slices.Sort(names)
			want, wantErr := LoadConfig(ctx, files)
			counted := &countingReader{Reader: files}
			got, gotErr := c.LoadChanged(ctx, counted, names)
			// The changed records, and one more to name a line in an error.
			if n := counted.reads.Load(); !full[tc.desc] && int(n) > len(names)+1 {
				t.Errorf("LoadChanged read %d files for %d changed records", n, len(names))
			}
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("LoadChanged: %v\nLoadConfig: %v", gotErr, wantErr)
			}
			if !reflect.DeepEqual(c.Mappings, before) {
				t.Error("LoadChanged changed the config it started from")
			}
			if wantErr != nil {
				return
			}
			if !reflect.DeepEqual(got.Mappings, want.Mappings) || !reflect.DeepEqual(got.Listeners, want.Listeners) {
				t.Fatalf("LoadChanged loaded\n%+v\nLoadConfig\n%+v", got.Mappings, want.Mappings)
			}
			// The result is loaded as LoadConfig's is: a change from it
			// is checked against it in turn.
			files[RecordName("next")] = record("next", selfSigned+"hosts = [\"next.example.com\"]\n")
			again, err := got.LoadChanged(ctx, files, []string{RecordName("next")})
			if err != nil || len(again.Mappings) != len(want.Mappings)+1 {
				t.Fatalf("a change after it: %v, %d mappings, want %d", err, len(again.Mappings), len(want.Mappings)+1)
			}
		})
	}
}

// countingReader counts the files read through it.
type countingReader struct {
	Reader
	reads atomic.Int32
}

func (r *countingReader) Read(ctx context.Context, name string) ([]byte, error) {
	r.reads.Add(1)
	return r.Reader.Read(ctx, name)
}

func cloneMappings(ms []Mapping) []Mapping {
	out := slices.Clone(ms)
	for i := range out {
		out[i].Hosts = slices.Clone(out[i].Hosts)
	}
	return out
}
