package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// The API goes through the same state code as the command line: an upstream
// with credentials and an invisible host are 422 without the password in
// the answer, a CA certificate as the leaf is added (201) with the warning
// in "warnings", and served_by is in the mapping list.
func TestAPIValidation(t *testing.T) {
	_, api, client, token := apiServe(t)

	for _, tc := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"listener": "web", "hosts": []string{"a.example.com"}, "source": "self-signed", "upstream": "http://admin:api-secret-pw@127.0.0.1:1"},
			`upstream \"http://***@127.0.0.1:1\" carries a user name or password`},
		{map[string]any{"listener": "web", "hosts": []string{"a\u200bb.example.com"}, "source": "self-signed"}, "U+200B ZERO WIDTH SPACE at character 2"},
	} {
		code, body := apiCall(t, client, "POST", api+"/mappings", token, tc.body)
		if code != 422 || !strings.Contains(body, tc.want) || strings.Contains(body, "api-secret-pw") {
			t.Errorf("POST %v: %d %s", tc.body, code, body)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	crt, keyFile := writePair(t, t.TempDir(), "ca", key, true, 90*24*time.Hour, "*.example.com")
	certPEM, _ := os.ReadFile(crt)
	keyPEM, _ := os.ReadFile(keyFile)
	code, body := apiCall(t, client, "POST", api+"/mappings", token,
		map[string]any{"listener": "web", "hosts": []string{"*.example.com"}, "id": "wild", "source": "manual", "cert_pem": string(certPEM), "key_pem": string(keyPEM)})
	var added struct {
		Warnings []string `json:"warnings"`
	}
	if code != 201 || json.Unmarshal([]byte(body), &added) != nil || len(added.Warnings) != 1 || !strings.Contains(added.Warnings[0], "is a CA certificate") {
		t.Fatalf("POST manual CA leaf: %d %s", code, body)
	}
	code, body = apiCall(t, client, "POST", api+"/mappings", token,
		map[string]any{"listener": "web", "hosts": []string{"app.example.com"}, "id": "app", "source": "acme", "challenge": "tls-alpn-01"})
	if code != 201 {
		t.Fatalf("POST acme: %d %s", code, body)
	}
	code, body = apiCall(t, client, "GET", api+"/mappings/app", token, nil)
	if code != 200 || !strings.Contains(strings.ReplaceAll(body, " ", ""), `"served_by":"wild"`) {
		t.Errorf("GET /mappings/app: %d %s", code, body)
	}
}
