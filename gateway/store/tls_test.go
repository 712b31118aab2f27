package store_test

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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// testCA is a certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key}
}

// issueServer issues a server certificate for the IP addresses and writes
// it and its key as PEM files in dir.
func (ca testCA) issueServer(t *testing.T, dir string, ips ...net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "postgres"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func (ca testCA) write(t *testing.T, file string) string {
	t.Helper()
	writePEM(t, file, "CERTIFICATE", ca.cert.Raw)
	return file
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyFullWithTheCAFromASecret runs a PostgreSQL server with TLS and
// a certificate for 127.0.0.1 issued by a test CA, and connects the store
// as the chart makes the gateway do with postgres.caSecret: the CA file
// mounted and PGSSLROOTCERT naming it, PGSSLMODE=verify-full, the DSN
// saying neither (as CloudNativePG's uri). The server's certificate must
// chain to that CA and name the host dialled; what the DSN says wins.
func TestVerifyFullWithTheCAFromASecret(t *testing.T) {
	dir := t.TempDir()
	serverCA, otherCA := newTestCA(t, "test PostgreSQL CA"), newTestCA(t, "another CA")
	certFile, keyFile := serverCA.issueServer(t, dir, net.ParseIP("127.0.0.1"))
	rightCA, wrongCA := serverCA.write(t, filepath.Join(dir, "ca.crt")), otherCA.write(t, filepath.Join(dir, "other-ca.crt"))
	admin, err := url.Parse(pgtest.StartServer(t, "PG_TLS_CERT="+certFile, "PG_TLS_KEY="+keyFile))
	if err != nil {
		t.Fatal(err)
	}
	q := admin.Query()
	q.Del("sslmode")
	admin.RawQuery = q.Encode()

	for _, tc := range []struct {
		name, host, ca string
		// query is appended to the DSN.
		query string
		// want is in the error; empty: the store opens, over TLS unless plain.
		want  string
		plain bool
	}{
		{name: "the server's CA", host: "127.0.0.1", ca: rightCA},
		{name: "another CA", host: "127.0.0.1", ca: wrongCA, want: "certificate signed by unknown authority"},
		{name: "a host name the certificate does not name", host: "localhost", ca: rightCA,
			want: "x509: certificate is not valid for any names, but wanted to match localhost"},
		{name: "the DSN's sslrootcert wins", host: "127.0.0.1", ca: wrongCA, query: "sslrootcert=" + url.QueryEscape(rightCA)},
		{name: "the DSN's sslmode wins", host: "127.0.0.1", ca: wrongCA, query: "sslmode=disable", plain: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGSSLMODE", "verify-full")
			t.Setenv("PGSSLROOTCERT", tc.ca)
			u := *admin
			u.Host = net.JoinHostPort(tc.host, admin.Port())
			u.RawQuery = tc.query
			s, err := store.Open(context.Background(), u.String())
			if tc.want != "" {
				if err == nil {
					s.Close()
					t.Fatalf("opened with %s", tc.name)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q does not say %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var ssl bool
			if err := s.Pool().QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl == tc.plain {
				t.Fatalf("connection over TLS: %v, want %v", ssl, !tc.plain)
			}
			if err := s.EnsureTenant(context.Background(), "acme"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
