package strictjson

import (
	"reflect"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	type body struct {
		Listener string   `json:"listener"`
		Hosts    []string `json:"hosts,omitempty"`
		Skipped  string   `json:"-"`
	}
	known := FieldsOf(&body{})
	if !reflect.DeepEqual(known, map[string]bool{"listener": true, "hosts": true}) {
		t.Fatalf("FieldsOf = %v", known)
	}
	for _, tc := range []struct{ desc, data, want string }{
		{"known keys", `{"listener":"web","hosts":["a"]}`, ""},
		{"a key in another case", `{"Listener":"web"}`, `unknown field "Listener"`},
		{"an unknown key", `{"listener":"web","upstreem":"x"}`, `unknown field "upstreem"`},
		{"a key twice", `{"listener":"a","listener":"b"}`, `field "listener" is given twice`},
		{"a json:\"-\" field", `{"Skipped":"x"}`, `unknown field "Skipped"`},
		{"not an object: left to the decoder", `["listener"]`, ""},
		{"broken JSON: left to the decoder", `{"listener":`, ""},
	} {
		if got := CheckKeys([]byte(tc.data), known); got != tc.want {
			t.Errorf("%s: CheckKeys(%s) = %q, want %q", tc.desc, tc.data, got, tc.want)
		}
	}
	if got := CheckKeys([]byte(`{"anything":1}`), FieldsOf(map[string]any{})); got != "" {
		t.Errorf("without fields to check against: %q", got)
	}
}

func TestKind(t *testing.T) {
	for k, want := range map[reflect.Kind]string{reflect.String: "string", reflect.Bool: "boolean", reflect.Slice: "array",
		reflect.Struct: "object", reflect.Map: "object", reflect.Int: "number", reflect.Float64: "number"} {
		if got := Kind(k); got != want {
			t.Errorf("Kind(%v) = %q, want %q", k, got, want)
		}
	}
}
