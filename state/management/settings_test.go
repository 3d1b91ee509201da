package management

import (
	"net"
	"os"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		desc string
		in   Settings
		want Settings // when wantErr is empty
		// wantErr are substrings of the error; every refusal is Invalid and
		// carries a hint.
		wantErr []string
	}{
		{
			desc: "defaults",
			in:   Settings{},
			want: Settings{Mode: ModeAuto, Listen: ":8443"},
		},
		{
			desc: "auto keeps a valid public URL",
			in:   Settings{Mode: ModeAuto, PublicURL: "https://mgmt.example.com:8443"},
			want: Settings{Mode: ModeAuto, PublicURL: "https://mgmt.example.com:8443", Listen: ":8443"},
		},
		{
			desc:    "provided without files",
			in:      Settings{Mode: ModeProvided},
			wantErr: []string{"MANAGEMENT_TLS_CERT_FILE", "MANAGEMENT_TLS_KEY_FILE"},
		},
		{
			desc:    "provided with only the certificate file",
			in:      Settings{Mode: ModeProvided, CertFile: "/etc/mgmt.crt"},
			wantErr: []string{"MANAGEMENT_TLS_CERT_FILE", "MANAGEMENT_TLS_KEY_FILE"},
		},
		{
			desc:    "provided with only the key file",
			in:      Settings{Mode: ModeProvided, KeyFile: "/etc/mgmt.key"},
			wantErr: []string{"MANAGEMENT_TLS_CERT_FILE", "MANAGEMENT_TLS_KEY_FILE"},
		},
		{
			desc: "provided with both files",
			in:   Settings{Mode: ModeProvided, CertFile: "/etc/mgmt.crt", KeyFile: "/etc/mgmt.key"},
			want: Settings{Mode: ModeProvided, CertFile: "/etc/mgmt.crt", KeyFile: "/etc/mgmt.key", Listen: ":8443"},
		},
		{
			desc:    "off without allowing insecure HTTP",
			in:      Settings{Mode: ModeOff},
			wantErr: []string{"MANAGEMENT_ALLOW_INSECURE_HTTP"},
		},
		{
			desc: "off allowing insecure HTTP",
			in:   Settings{Mode: ModeOff, AllowInsecureHTTP: true},
			want: Settings{Mode: ModeOff, AllowInsecureHTTP: true, Listen: ":8443"},
		},
		{
			desc:    "unknown mode",
			in:      Settings{Mode: "manual"},
			wantErr: []string{"MANAGEMENT_TLS_MODE", `"manual"`},
		},
		{
			desc:    "public URL without scheme",
			in:      Settings{PublicURL: "mgmt.example.com"},
			wantErr: []string{"MANAGEMENT_PUBLIC_URL"},
		},
		{
			desc:    "public URL with another scheme",
			in:      Settings{PublicURL: "ftp://x"},
			wantErr: []string{"MANAGEMENT_PUBLIC_URL"},
		},
		{
			desc:    "public URL without host",
			in:      Settings{PublicURL: "https://"},
			wantErr: []string{"MANAGEMENT_PUBLIC_URL"},
		},
		{
			desc:    "public URL with an invalid host",
			in:      Settings{PublicURL: "https://bad_host/"},
			wantErr: []string{"MANAGEMENT_PUBLIC_URL"},
		},
		{
			desc:    "public URL with a zoned IPv6 address",
			in:      Settings{PublicURL: "https://[fe80::1%25eth0]:8443"},
			wantErr: []string{"MANAGEMENT_PUBLIC_URL", "zone"},
		},
		{
			desc: "extra hosts are normalised",
			in: Settings{ExtraHosts: []string{
				"MGMT.Example.COM", "mgmt2.example.com.", " 10.0.0.1 ", "2001:DB8:0:0::1", "mgmt",
			}},
			want: Settings{Mode: ModeAuto, Listen: ":8443", ExtraHosts: []string{
				"mgmt.example.com", "mgmt2.example.com", "10.0.0.1", "2001:db8::1", "mgmt",
			}},
		},
		{
			desc:    "extra host with an underscore",
			in:      Settings{ExtraHosts: []string{"ok.example.com", "bad_host"}},
			wantErr: []string{"MANAGEMENT_TLS_EXTRA_HOSTS", "bad_host"},
		},
		{
			desc:    "extra host that is a wildcard",
			in:      Settings{ExtraHosts: []string{"*.x.com"}},
			wantErr: []string{"MANAGEMENT_TLS_EXTRA_HOSTS", "*.x.com"},
		},
		{
			// Accepted before: it became the DNS SAN "fe80::1%eth0".
			desc:    "extra host that is a zoned IPv6 address",
			in:      Settings{ExtraHosts: []string{"fe80::1%eth0"}},
			wantErr: []string{"MANAGEMENT_TLS_EXTRA_HOSTS", "zone"},
		},
		{
			desc: "listen address is normalised",
			in:   Settings{Listen: "127.0.0.1:08443"},
			want: Settings{Mode: ModeAuto, Listen: "127.0.0.1:8443"},
		},
		{
			desc: "IPv6 listen address",
			in:   Settings{Listen: "[::1]:8443"},
			want: Settings{Mode: ModeAuto, Listen: "[::1]:8443"},
		},
		{
			desc:    "listen on port 0",
			in:      Settings{Listen: ":0"},
			wantErr: []string{"MANAGEMENT_LISTEN"},
		},
		{
			desc:    "listen address without port",
			in:      Settings{Listen: "x"},
			wantErr: []string{"MANAGEMENT_LISTEN"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := tc.in
			got.ExtraHosts = slices.Clone(tc.in.ExtraHosts)
			err := got.Validate()
			if tc.wantErr != nil {
				wantFault(t, err, fault.Invalid, tc.wantErr...)
				if fault.HintOf(err) == "" {
					t.Errorf("error %q has no hint", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got.Mode != tc.want.Mode || got.Listen != tc.want.Listen || got.PublicURL != tc.want.PublicURL ||
				got.CertFile != tc.want.CertFile || got.KeyFile != tc.want.KeyFile ||
				got.AllowInsecureHTTP != tc.want.AllowInsecureHTTP || !slices.Equal(got.ExtraHosts, tc.want.ExtraHosts) {
				t.Errorf("Validate gave\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}

func TestSplitHosts(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want []string
	}{
		{desc: "empty", in: "", want: nil},
		{desc: "only separators", in: " , ,", want: nil},
		{desc: "one", in: "a", want: []string{"a"}},
		{desc: "spaces and empty entries", in: "a, b,,c ", want: []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := SplitHosts(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("SplitHosts(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestWantedNames(t *testing.T) {
	// This machine's name is in the certificate when it is a valid name.
	var host string
	if h, err := os.Hostname(); err == nil {
		if n, err := hostname.NormalizeServerName(h); err == nil && net.ParseIP(n) == nil {
			host = n
		}
	}
	tests := []struct {
		desc      string
		set       Settings
		wantFirst string // the first DNS name, which becomes the common name
		wantDNS   []string
		wantIPs   []string
	}{
		{
			desc:      "loopback names only",
			set:       Settings{},
			wantFirst: "localhost",
			wantDNS:   []string{"localhost"},
			wantIPs:   []string{"127.0.0.1", "::1"},
		},
		{
			desc: "public URL and extra hosts",
			set: Settings{
				PublicURL:  "https://MGMT.Example.com:8443/ui",
				ExtraHosts: []string{"extra.example.com", "10.0.0.5", "2001:db8::1", "localhost"},
			},
			wantFirst: "mgmt.example.com",
			wantDNS:   []string{"mgmt.example.com", "extra.example.com", "localhost"},
			wantIPs:   []string{"10.0.0.5", "2001:db8::1", "127.0.0.1", "::1"},
		},
		{
			desc:      "public URL with an IP address",
			set:       Settings{PublicURL: "https://192.0.2.7:8443"},
			wantFirst: "localhost",
			wantDNS:   []string{"localhost"},
			wantIPs:   []string{"192.0.2.7", "127.0.0.1", "::1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			set := tc.set
			if err := set.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got := set.WantedNames()
			wantDNS := tc.wantDNS
			if host != "" && !slices.Contains(wantDNS, host) {
				wantDNS = append(slices.Clone(wantDNS), host)
			}
			if !equalSets(got.DNS, wantDNS) {
				t.Errorf("DNS names = %q, want %q", got.DNS, wantDNS)
			}
			if len(got.DNS) == 0 || got.DNS[0] != tc.wantFirst {
				t.Errorf("first DNS name in %q, want %q", got.DNS, tc.wantFirst)
			}
			var ips []string
			for _, ip := range got.IPs {
				ips = append(ips, ip.String())
			}
			if !equalSets(ips, tc.wantIPs) {
				t.Errorf("IP addresses = %q, want %q", ips, tc.wantIPs)
			}
		})
	}
}

// equalSets reports whether a and b hold the same strings, each once.
func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
