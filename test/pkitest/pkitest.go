// Package pkitest writes issued certificates as a workload finds them
// mounted (tls.crt, tls.key, ca.crt) and opens file identity sources on them.
package pkitest

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
)

// Files are the paths of a written identity.
type Files struct{ Cert, Key, CA string }

// Write writes the certificate (with its chain), its key and the trusted
// roots into dir, replacing what is there.
func Write(t testing.TB, dir string, issued *ca.Issued, roots ...*x509.Certificate) Files {
	t.Helper()
	f, err := WriteFiles(dir, issued, roots...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// WriteFiles is Write for programs without a testing.TB (benchmarks).
func WriteFiles(dir string, issued *ca.Issued, roots ...*x509.Certificate) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	keyPEM, err := issued.Key.MarshalPEM()
	if err != nil {
		return Files{}, fmt.Errorf("encoding key: %w", err)
	}
	var caPEM []byte
	for _, r := range roots {
		caPEM = append(caPEM, (&ca.Issued{Cert: r}).CertPEM()...)
	}
	f := Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), CA: filepath.Join(dir, "ca.crt")}
	for name, data := range map[string][]byte{f.Cert: issued.CertPEM(), f.Key: keyPEM, f.CA: caPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return Files{}, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return f, nil
}

// Source writes the files and opens a FileSource on them for the default trust domain.
func Source(t testing.TB, dir string, issued *ca.Issued, roots ...*x509.Certificate) *mtls.FileSource {
	t.Helper()
	f := Write(t, dir, issued, roots...)
	src, err := mtls.NewFileSource(f.Cert, f.Key, f.CA, spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	return src
}
