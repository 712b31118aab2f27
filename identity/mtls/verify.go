package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/serviceradar/sync-operator/identity"
)

// Verification errors, wrapped so callers can tell which rule failed.
var (
	// ErrIssuerTenant means an edge certificate was issued by another tenant's CA.
	ErrIssuerTenant = errors.New("edge certificate is not issued by its own tenant's CA")
	// ErrServerIdentity means the server is not the gateway the client expects.
	ErrServerIdentity = errors.New("server is not the expected gateway")
	// ErrNoPeer means a handler ran without a verified TLS peer.
	ErrNoPeer = errors.New("no verified TLS peer")
)

// Verifier checks a peer's certificate chain and classifies it.
type Verifier struct {
	// Classifier turns the verified leaf into an identity.
	Classifier identity.Classifier
	// Source supplies the SPIFFE bundles and the edge roots.
	Source Source
	// UpstreamCAs are the CAs that issue upstream-format certificates (no
	// tenant label), accepted only when the Classifier maps them to a
	// tenant. Upstream-format chains are verified against these alone, and
	// these never verify a certificate of this system's own format.
	UpstreamCAs []*x509.Certificate
}

// ErrUpstreamIssuer means an upstream-format certificate was presented
// where no upstream CA is configured or it was not issued by one.
var ErrUpstreamIssuer = errors.New("upstream-format certificate is not issued by a configured upstream CA")

// verifyUpstream verifies an upstream-format chain against the upstream
// CAs and classifies it; spiffe is its SPIFFE ID, zero for a CN identity.
func (v Verifier) verifyUpstream(certs []*x509.Certificate, spiffe spiffeid.ID) (identity.Identity, error) {
	if v.Classifier.Upstream == nil || len(v.UpstreamCAs) == 0 {
		if spiffe.IsZero() {
			return v.Classifier.ClassifyCommonName(certs[0].Subject.CommonName)
		}
		return v.Classifier.ClassifySPIFFEID(spiffe) // refused: no mapping
	}
	if !spiffe.IsZero() {
		id, _, err := x509svid.Verify(certs, x509bundle.FromX509Authorities(spiffe.TrustDomain(), v.UpstreamCAs))
		if err != nil {
			return identity.Identity{}, fmt.Errorf("verifying upstream X.509-SVID %q: %w: %w", spiffe, ErrUpstreamIssuer, err)
		}
		return v.Classifier.ClassifySPIFFEID(id)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range v.UpstreamCAs {
		roots.AddCert(c)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return identity.Identity{}, fmt.Errorf("verifying upstream certificate %q: %w: %w", certs[0].Subject.CommonName, ErrUpstreamIssuer, err)
	}
	return v.Classifier.ClassifyCommonName(certs[0].Subject.CommonName)
}

// leafSPIFFEID is the leaf's single SPIFFE ID as it claims it (not yet
// verified), zero when it has none or it does not parse.
func leafSPIFFEID(c *x509.Certificate) spiffeid.ID {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			id, err := spiffeid.FromURI(u)
			if err != nil {
				return spiffeid.ID{}
			}
			return id
		}
	}
	return spiffeid.ID{}
}

func hasSPIFFEID(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// VerifyClient verifies a client chain (leaf first): an SVID against the
// SPIFFE bundle of its trust domain, or an edge certificate against the
// platform root, issued by the CA of the tenant its CN names.
func (v Verifier) VerifyClient(certs []*x509.Certificate) (identity.Identity, error) {
	if len(certs) == 0 {
		return identity.Identity{}, identity.ErrNoCertificate
	}
	// The names a leaf claims pick the roots it is verified against: the
	// upstream CAs for the upstream formats, this system's roots otherwise.
	if hasSPIFFEID(certs[0]) {
		if claimed := leafSPIFFEID(certs[0]); !claimed.IsZero() && identity.IsUpstreamSPIFFEID(claimed) {
			return v.verifyUpstream(certs, claimed)
		}
		id, _, err := x509svid.Verify(certs, v.Source.Bundles())
		if err != nil {
			return identity.Identity{}, fmt.Errorf("verifying X.509-SVID: %w", err)
		}
		return v.Classifier.ClassifySPIFFEID(id)
	}
	if identity.IsUpstreamCommonName(certs[0].Subject.CommonName) {
		return v.verifyUpstream(certs, spiffeid.ID{})
	}
	leaf := certs[0]
	roots, err := v.Source.EdgeRoots()
	if err != nil {
		return identity.Identity{}, err
	}
	if roots == nil {
		return identity.Identity{}, errNoEdge
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return identity.Identity{}, fmt.Errorf("verifying edge certificate %q: %w", leaf.Subject.CommonName, err)
	}
	id, err := v.Classifier.ClassifyCommonName(leaf.Subject.CommonName)
	if err != nil {
		return identity.Identity{}, err
	}
	for _, chain := range chains {
		if len(chain) < 2 {
			continue
		}
		slug, err := identity.ParseTenantCACommonName(chain[1].Subject.CommonName)
		if err == nil && slug == id.TenantSlug {
			id.Issuer = identity.KeyFingerprint(chain[1])
			return id, nil
		}
	}
	return identity.Identity{}, fmt.Errorf("CN %q names tenant %q: %w", leaf.Subject.CommonName, id.TenantSlug, ErrIssuerTenant)
}

// ServerConfig is the TLS configuration of a server that requires and
// verifies client certificates in the handshake, before any handler runs.
func ServerConfig(v Verifier) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return v.Source.Certificate()
		},
		// VerifyConnection (unlike VerifyPeerCertificate) also runs on resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.VerifyClient(cs.PeerCertificates)
			return err
		},
	}
}

// ServerExpectation says which server a client accepts.
type ServerExpectation struct {
	// SPIFFEID, when set, is the exact SPIFFE ID the server must present.
	// Otherwise an SVID server must be a gateway of the classifier's trust domain.
	SPIFFEID spiffeid.ID
	// ServerName is the DNS name (or IP) checked for a server without SPIFFE ID.
	ServerName string
}

// ClientConfig is the TLS configuration of a client that presents its
// certificate and accepts only the expected gateway.
func ClientConfig(v Verifier, want ServerExpectation) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below: SPIFFE servers are checked against the
		// bundle and their ID, others against the roots and the server name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return v.Source.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return identity.ErrNoCertificate
			}
			return v.verifyServer(cs.PeerCertificates, want)
		},
	}
}

func (v Verifier) verifyServer(certs []*x509.Certificate, want ServerExpectation) error {
	if hasSPIFFEID(certs[0]) {
		id, _, err := x509svid.Verify(certs, v.Source.Bundles())
		if err != nil {
			return fmt.Errorf("verifying server X.509-SVID: %w", err)
		}
		if !want.SPIFFEID.IsZero() {
			if id != want.SPIFFEID {
				return fmt.Errorf("server %q, want %q: %w", id, want.SPIFFEID, ErrServerIdentity)
			}
			return nil
		}
		got, err := v.Classifier.ClassifySPIFFEID(id)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if got.ComponentType != identity.ComponentGateway {
			return fmt.Errorf("server %q is a %q component: %w", id, got.ComponentType, ErrServerIdentity)
		}
		return nil
	}
	roots, err := v.Source.EdgeRoots()
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: want.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("verifying server certificate for %q: %w", want.ServerName, err)
	}
	return nil
}

// PeerIdentity returns the identity of the caller of a gRPC handler. The
// chain was verified in the handshake by ServerConfig; it is classified again
// here from the leaf alone, and refused with ErrCertificateExpired when it is
// no longer valid (a connection outlives its certificates): see PeerIdentityAt.
func PeerIdentity(ctx context.Context, c identity.Classifier) (identity.Identity, error) {
	return PeerIdentityAt(ctx, c, time.Now())
}
