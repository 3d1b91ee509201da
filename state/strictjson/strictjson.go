// Package strictjson holds what encoding/json's DisallowUnknownFields lets
// through and the API and `mapping import` both refuse: a key that matches
// a field only case-insensitively ("Listener"), and a key given twice
// (encoding/json keeps the last). Callers turn the problem into their own
// error (a 400 in the API, a refused line in an import).
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// FieldsOf are the JSON names of the fields of the struct v points to;
// nil when v is not a pointer to a struct.
func FieldsOf(v any) map[string]bool {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	known := map[string]bool{}
	for f := range t.Elem().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	return known
}

// CheckKeys returns the first key of the JSON object data that is not in
// known, or is given twice, as a sentence ("unknown field \"x\""); "" when
// there is none or known is nil (nothing to check against). Anything else
// wrong with data is left to the decoder, whose message is the better one.
func CheckKeys(data []byte, known map[string]bool) string {
	if known == nil {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		switch {
		case !known[key]:
			return fmt.Sprintf("unknown field %q", key)
		case seen[key]:
			return fmt.Sprintf("field %q is given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// Kind names a Go kind the way a JSON user knows it.
func Kind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return "number"
}
