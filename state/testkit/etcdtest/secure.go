package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// TLSFiles are PEM files for a TLS cluster: its CA, a client certificate
// the cluster accepts, and a CA that signed nothing of the cluster's.
type TLSFiles struct {
	CA, ClientCert, ClientKey string
	OtherCA                   string
	server                    transport.TLSInfo
}

// NewTLSFiles writes a CA, a server certificate for 127.0.0.1 and ::1, a
// client certificate and an unrelated CA into a temporary directory.
func NewTLSFiles(t testing.TB) *TLSFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert := newCA(t, "p2ptls test etcd CA")
	_, other := newCA(t, "unrelated CA")
	f := &TLSFiles{
		CA:         writePEM(t, dir, "ca.crt", "CERTIFICATE", caCert.Raw),
		OtherCA:    writePEM(t, dir, "other-ca.crt", "CERTIFICATE", other.Raw),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
	srvCert, srvKey := leaf(t, caCert, caKey, "etcd", x509.ExtKeyUsageServerAuth)
	f.server = transport.TLSInfo{
		CertFile:      writePEM(t, dir, "server.crt", "CERTIFICATE", srvCert),
		KeyFile:       writePEM(t, dir, "server.key", "PRIVATE KEY", srvKey),
		TrustedCAFile: f.CA,
	}
	cliCert, cliKey := leaf(t, caCert, caKey, "p2ptls", x509.ExtKeyUsageClientAuth)
	writePEM(t, dir, "client.crt", "CERTIFICATE", cliCert)
	writePEM(t, dir, "client.key", "PRIVATE KEY", cliKey)
	return f
}

// ServeTLS is a configure hook of StartClusterWith that makes the members
// answer clients over TLS only; with clientCerts they also demand a client
// certificate signed by the CA.
func (f *TLSFiles) ServeTLS(clientCerts bool) func(*embed.Config) {
	return func(cfg *embed.Config) {
		for i := range cfg.ListenClientUrls {
			cfg.ListenClientUrls[i].Scheme = "https"
		}
		for i := range cfg.AdvertiseClientUrls {
			cfg.AdvertiseClientUrls[i].Scheme = "https"
		}
		cfg.ClientTLSInfo = f.server
		cfg.ClientTLSInfo.ClientCertAuth = clientCerts
	}
}

// CheapPasswords is a configure hook of StartClusterWith that hashes
// passwords with bcrypt's least cost: the default takes seconds under the
// race detector, longer than a client's dial timeout.
func CheapPasswords(cfg *embed.Config) { cfg.BcryptCost = 4 }

// EnableAuth turns on etcd's authentication with the user root and
// password, which every client must then give.
func EnableAuth(t testing.TB, c *Cluster, password string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", password); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
}

func newCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func leaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) (certDER, keyDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return certDER, keyDER
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
