package edge

import "crypto/tls"

// TLS12CipherSuites are the only TLS 1.2 suites serve offers: ECDHE key
// exchange with an AEAD cipher. The CBC suites Go still enables by default
// (ECDHE-ECDSA-AES128-SHA and friends) are what testssl flags as LUCKY13.
// TLS 1.3 suites are not configurable in Go, and all of them are AEAD.
var TLS12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig is the policy every serve listener starts from: TLS 1.2 with
// TLS12CipherSuites, and TLS 1.3 as Go ships it.
func TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: TLS12CipherSuites}
}
