// Package ca is the platform's certificate authority: a root CA, per-tenant
// intermediate CAs, and the leaf certificates issued under them (X.509-SVIDs,
// edge client certificates and gateway server certificates). Keys are ECDSA
// P-256 and never appear in logs, errors or formatted values.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
)

// Default lifetimes.
const (
	DefaultRootLifetime     = 10 * 365 * 24 * time.Hour
	DefaultTenantCALifetime = 5 * 365 * 24 * time.Hour
	DefaultSVIDLifetime     = time.Hour
	DefaultEdgeLifetime     = 90 * 24 * time.Hour
	DefaultServerLifetime   = 30 * 24 * time.Hour
)

// clockSkew back-dates NotBefore so peers with slightly slow clocks accept new certificates.
const clockSkew = 5 * time.Minute

// Key is a private key that refuses to print itself.
type Key struct{ k *ecdsa.PrivateKey }

// Signer returns the key for signing.
func (k Key) Signer() crypto.Signer { return k.k }

// String hides the key.
func (Key) String() string { return "[private key redacted]" }

// GoString hides the key.
func (Key) GoString() string { return "[private key redacted]" }

// Format hides the key in every verb.
func (Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[private key redacted]")) }

// MarshalPEM encodes the key as a PKCS#8 PEM block.
func (k Key) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.k)
	if err != nil {
		return nil, errors.New("encoding private key failed") // the error could quote key material
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newKey() (Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generating ECDSA P-256 key: %w", err)
	}
	return Key{k}, nil
}

// ParseKeyPEM decodes a PKCS#8 or SEC 1 ECDSA key.
func ParseKeyPEM(data []byte) (Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("no PEM block in private key data")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return Key{}, errors.New("private key is not ECDSA")
		}
		return Key{ek}, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return Key{k}, nil
	}
	return Key{}, errors.New("private key is neither PKCS#8 nor SEC 1 ECDSA")
}

// Issued is a certificate with its key and the chain of CAs above it (up to,
// not including, the root).
type Issued struct {
	// Cert is the issued certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key Key
	// Chain holds the intermediate CAs between Cert and the root.
	Chain []*x509.Certificate
}

// String describes the certificate without its key.
func (i *Issued) String() string {
	return fmt.Sprintf("certificate %q (serial %s, expires %s)", subjectName(i.Cert), i.Cert.SerialNumber, i.Cert.NotAfter.UTC().Format(time.RFC3339))
}

// CertPEM is the certificate followed by its intermediates, as TLS peers expect.
func (i *Issued) CertPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.Cert.Raw})
	for _, c := range i.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func subjectName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.CommonName
}

// Authority issues certificates under its own CA certificate.
type Authority struct {
	Issued
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// newKeyAndSerial makes the key and serial number of a new certificate.
func newKeyAndSerial() (Key, *big.Int, error) {
	key, err := newKey()
	if err != nil {
		return Key{}, nil, err
	}
	sn, err := serial()
	if err != nil {
		return Key{}, nil, err
	}
	return key, sn, nil
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func keyID(k Key) []byte {
	return publicKeyID(k.k.Public())
}

// publicKeyID is the subject key id of a public key: the first 20 bytes of
// the SHA-256 of its SubjectPublicKeyInfo.
func publicKeyID(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return sum[:20]
}

// NewRoot creates a self-signed platform root CA.
func NewRoot(commonName string, lifetime time.Duration, now func() time.Time) (*Authority, error) {
	if now == nil {
		now = time.Now
	}
	if lifetime <= 0 {
		lifetime = DefaultRootLifetime
	}
	key, sn, err := newKeyAndSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"ServiceRadar"}},
		NotBefore:             t.Add(-clockSkew),
		NotAfter:              t.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(key),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.k.Public(), key.k)
	if err != nil {
		return nil, fmt.Errorf("signing root CA %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing root CA: %w", err)
	}
	return &Authority{Issued: Issued{Cert: cert, Key: key}, Now: now}, nil
}

// Load rebuilds an authority from its PEM certificate (followed by any
// intermediates) and key, as kept in a Secret.
func Load(certPEM, keyPEM []byte, now func() time.Time) (*Authority, error) {
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", subjectName(certs[0]))
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !key.k.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("private key does not match CA certificate %q", subjectName(certs[0]))
	}
	return &Authority{Issued: Issued{Cert: certs[0], Key: key, Chain: certs[1:]}, Now: now}, nil
}

// ParseCertificatesPEM decodes every CERTIFICATE block of data.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in PEM data")
	}
	return out, nil
}

// chainBelow is the chain a certificate issued by a carries: a itself and its
// intermediates, without the self-signed root.
func (a *Authority) chainBelow() []*x509.Certificate {
	if isSelfSigned(a.Cert) {
		return nil
	}
	return append([]*x509.Certificate{a.Cert}, a.Chain...)
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

func (a *Authority) sign(tmpl *x509.Certificate, lifetime time.Duration) (*Issued, error) {
	key, sn, err := newKeyAndSerial()
	if err != nil {
		return nil, err
	}
	issued, err := a.signKey(tmpl, lifetime, key.k.Public(), sn)
	if err != nil {
		return nil, err
	}
	issued.Key = key
	return issued, nil
}

// signKey signs tmpl for the public key pub; the Issued has no private key.
func (a *Authority) signKey(tmpl *x509.Certificate, lifetime time.Duration, pub crypto.PublicKey, sn *big.Int) (*Issued, error) {
	t := a.now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = t.Add(-clockSkew)
	tmpl.NotAfter = t.Add(lifetime)
	if tmpl.NotAfter.After(a.Cert.NotAfter) {
		tmpl.NotAfter = a.Cert.NotAfter // never outlive the issuer
	}
	tmpl.SubjectKeyId = publicKeyID(pub)
	tmpl.AuthorityKeyId = a.Cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key.k)
	if err != nil {
		return nil, fmt.Errorf("signing certificate under %q: %w", a.Cert.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing issued certificate: %w", err)
	}
	return &Issued{Cert: cert, Chain: a.chainBelow()}, nil
}

// NewTenantCA issues the intermediate CA of a tenant (CN
// tenant-<slug>.ca.serviceradar); it may issue leaves only.
func (a *Authority) NewTenantCA(tenantSlug string, lifetime time.Duration) (*Authority, error) {
	cn, err := identity.TenantCACommonName(tenantSlug)
	if err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultTenantCALifetime
	}
	issued, err := a.sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ServiceRadar"}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}, lifetime)
	if err != nil {
		return nil, err
	}
	return &Authority{Issued: *issued, Now: a.Now}, nil
}

// IssueSVID issues an X.509-SVID: the SPIFFE ID as the only URI SAN, usable
// for client and server authentication.
func (a *Authority) IssueSVID(id spiffeid.ID, lifetime time.Duration) (*Issued, error) {
	if id.IsZero() {
		return nil, errors.New("issuing SVID: empty SPIFFE ID")
	}
	if lifetime <= 0 {
		lifetime = DefaultSVIDLifetime
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, fmt.Errorf("issuing SVID for %q: %w", id, err)
	}
	return a.sign(&x509.Certificate{
		URIs:                  []*url.URL{u},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}, lifetime)
}

// IssueEdgeClient issues an edge component's client certificate with CN
// <component_id>.<partition>.<tenant_slug>.serviceradar.
func (a *Authority) IssueEdgeClient(componentID, partition, tenantSlug string, lifetime time.Duration) (*Issued, error) {
	cn, err := identity.FormatCommonName(componentID, partition, tenantSlug)
	if err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultEdgeLifetime
	}
	return a.sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ServiceRadar"}},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, lifetime)
}

// IssueEdgeClientForKey issues the edge client certificate of
// IssueEdgeClient (the same template, lifetime and chain) for a public key
// the edge made and keeps: the Issued has no private key. Callers check the
// request that carried pub (see identity/renewal); only pub is taken from it.
func (a *Authority) IssueEdgeClientForKey(pub crypto.PublicKey, componentID, partition, tenantSlug string, lifetime time.Duration) (*Issued, error) {
	cn, err := identity.FormatCommonName(componentID, partition, tenantSlug)
	if err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultEdgeLifetime
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	return a.signKey(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ServiceRadar"}},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, lifetime, pub, sn)
}

// ServerNames are the names a server certificate is valid for.
type ServerNames struct {
	// DNSNames are host names, such as the gateway Service's DNS names.
	DNSNames []string
	// IPs are addresses, such as 127.0.0.1 for local runs.
	IPs []net.IP
	// SPIFFEID, when set, is added as a URI SAN so SPIFFE clients can authorize the server by ID.
	SPIFFEID spiffeid.ID
}

// IssueServer issues a gateway server certificate.
func (a *Authority) IssueServer(names ServerNames, lifetime time.Duration) (*Issued, error) {
	if len(names.DNSNames) == 0 && len(names.IPs) == 0 && names.SPIFFEID.IsZero() {
		return nil, errors.New("issuing server certificate: no DNS name, IP or SPIFFE ID")
	}
	if lifetime <= 0 {
		lifetime = DefaultServerLifetime
	}
	tmpl := &x509.Certificate{
		DNSNames:              names.DNSNames,
		IPAddresses:           names.IPs,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if len(names.DNSNames) > 0 {
		tmpl.Subject.CommonName = names.DNSNames[0]
	}
	if !names.SPIFFEID.IsZero() {
		u, err := url.Parse(names.SPIFFEID.String())
		if err != nil {
			return nil, fmt.Errorf("issuing server certificate for %q: %w", names.SPIFFEID, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	return a.sign(tmpl, lifetime)
}

// RenewAt is when a certificate should be renewed: at two thirds of its lifetime.
func RenewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life * 2 / 3)
}

// NeedsRenewal reports whether a certificate has reached two thirds of its lifetime.
func NeedsRenewal(c *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(c))
}
