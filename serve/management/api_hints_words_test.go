package management

import "testing"

// TestAPIWords: the hints of the state code that no request of
// TestAPIHintsSpeakAPI reaches in a test state (a change between the
// lock and the issuance, an account's broken CA file, a paused account)
// come out in the API's words too.
func TestAPIWords(t *testing.T) {
	for _, tc := range []struct{ cli, api string }{
		{"run 'p2ptls cert issue shop' again; it changed while this command ran", "send POST /api/v1/mappings/shop/issue again; the mapping changed meanwhile"},
		{"point --ca-file at a PEM certificate file", "register the ACME account again on the management host, with a CA file that holds a PEM certificate"},
		{"check the directory URL, --ca-file and the network", "check the ACME account's directory and CA file (GET /api/v1/acme/accounts) and the network"},
		{"open the unpause link, then run 'p2ptls cert issue' for the mapping; until then it retries once a day",
			"open the unpause link, then send POST /api/v1/mappings/{id}/issue; until then it retries once a day"},
		{"wait for it to finish; 'p2ptls cert list' then shows its result", "wait for it to finish; GET /api/v1/mappings/{id} then shows its result"},
		{"'p2ptls cert list' shows each one's last error", "GET /api/v1/mappings shows each one's last_error"},
		{"see 'p2ptls mapping list'", "GET /api/v1/mappings lists the existing ones"},
		{`give listener "web" an HTTP address (--http-addr :80), or use another challenge`, `give listener "web" an HTTP address (its http_addr, e.g. :80), or use another challenge`},
		{"write the token into that file (one line, mode 0600), or give it again with 'p2ptls dns-credential add cf --replace --api-token-file F'",
			`write the token into that file (one line, mode 0600), or remove it with DELETE /api/v1/dns-credentials/cf and add it again with its "api_token"`},
		{"enable it with 'p2ptls dns-credential enable cf'", "enable it with POST /api/v1/dns-credentials/cf/enable"},
		{"register one with 'p2ptls acme account register --directory https://acme.example/dir …'",
			"register an ACME account at https://acme.example/dir on the management host first; GET /api/v1/acme/accounts lists the accounts"},
		{"a hint in no command's words", "a hint in no command's words"},
	} {
		if got := apiWords(tc.cli); got != tc.api {
			t.Errorf("apiWords(%q)\n = %q\nwant %q", tc.cli, got, tc.api)
		}
	}
}
