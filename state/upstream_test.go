package state

import (
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Credentials in an upstream URL would sit in argv, p2ptls.toml, backups,
// "listener list" and logs: every place an upstream is accepted refuses
// them, and no message shows the password.
func TestUpstreamUserinfoRefused(t *testing.T) {
	const secret = "s3cr3t-pass"
	base := func() *Config {
		return &Config{SchemaVersion: 1, Listeners: []Listener{{Name: "web", Addr: ":443"}}}
	}
	tests := []struct {
		desc   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"listener upstream with password", func(c *Config) { c.Listeners[0].Upstream = "http://admin:" + secret + "@127.0.0.1:8080/" },
			`upstream "http://***@127.0.0.1:8080/" carries a user name or password`},
		{"listener upstream with user only", func(c *Config) { c.Listeners[0].Upstream = "https://" + secret + "@backend.internal" },
			`"https://***@backend.internal" carries a user name`},
		{"mapping upstream with password", func(c *Config) {
			c.Mappings = []Mapping{{ID: "m", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceSelfSigned, Upstream: "http://u:" + secret + "@10.0.0.1"}}
		}, `mapping "m": upstream "http://***@10.0.0.1" carries`},
		{"unparsable URL with password", func(c *Config) { c.Listeners[0].Upstream = "http://u:" + secret + "%zz@host" },
			`"http://***@host" is not a URL`},
		{"api_base_url with password", func(c *Config) {
			c.DNSCredentials = []DNSCredential{{Name: "cf", Provider: ProviderCloudflare, APIBaseURL: "https://u:" + secret + "@api.example.com/client/v4"}}
		}, `api_base_url "https://***@api.example.com/client/v4" carries`},
		{"at sign in path is fine", func(c *Config) { c.Listeners[0].Upstream = "http://127.0.0.1:8080/@home" }, ""},
		{"at sign in query is fine", func(c *Config) { c.Listeners[0].Upstream = "http://127.0.0.1:8080/?who=a@b" }, ""},
		{"plain upstream", func(c *Config) { c.Listeners[0].Upstream = "https://backend.internal:8443" }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(fault.HintOf(err), secret) {
				t.Errorf("the error shows the password: %v", err)
			}
			if fault.KindOf(err) != fault.Invalid {
				t.Errorf("kind %v, want Invalid (exit 2)", fault.KindOf(err))
			}
		})
	}
}

func TestMaskUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"http://u:p@h:1/x":       "http://***@h:1/x",
		"http://u:p@q@h":         "http://***@h",
		"u:p@h:80":               "***@h:80",
		"http://h/a@b":           "http://h/a@b",
		"http://h?x=@":           "http://h?x=@",
		"":                       "",
		"https://user@[::1]:443": "https://***@[::1]:443",
	} {
		if got := MaskUserinfo(in); got != want {
			t.Errorf("MaskUserinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// A hand edit that fails validation is reported with its line and field,
// like a decode error.
func TestParseConfigNamesLineAndField(t *testing.T) {
	file := `schema_version = 1

[[listeners]]
name = "web"
addr = ":443"

[[mappings]]
id = "ok"
listener = "web"
hosts = ["a.example.com"]
source = "self-signed"

[[mappings]]
id = "bad"
listener = "web"
hosts = ["b.example.com"]
source = "self-signed"
upstream = "http://admin:hunter2@127.0.0.1:9000"
`
	_, err := ParseConfig([]byte(file))
	want := `line 18, field "mappings[1].upstream": mapping "bad": upstream "http://***@127.0.0.1:9000" carries a user name or password`
	if err == nil || err.Error() != want {
		t.Fatalf("ParseConfig = %v\nwant %s", err, want)
	}
	if strings.Contains(err.Error(), "hunter2") || fault.KindOf(err) != fault.Invalid {
		t.Errorf("kind %v; error %v", fault.KindOf(err), err)
	}

	// A host taken: the line of the hosts.
	file = strings.Replace(file, `hosts = ["b.example.com"]`, `hosts = ["a.example.com"]`, 1)
	file = strings.Replace(file, `upstream = "http://admin:hunter2@127.0.0.1:9000"`, "", 1)
	_, err = ParseConfig([]byte(file))
	if err == nil || !strings.HasPrefix(err.Error(), `line 16, field "mappings[1].hosts": mapping "bad": host "a.example.com" is already mapped`) {
		t.Fatalf("ParseConfig = %v", err)
	}
	// A listener's upstream.
	_, err = ParseConfig([]byte("schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":443\"\n  upstream = 'https://u:p@h'\n"))
	if err == nil || !strings.HasPrefix(err.Error(), `line 5, field "listeners[0].upstream": listener "web": upstream "https://***@h" carries`) {
		t.Fatalf("ParseConfig = %v", err)
	}
}
