package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRoot(t *testing.T, c *clock) *ca.Authority {
	t.Helper()
	root, err := ca.NewRoot("serviceradar-root", 0, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestTenantChainVerifies(t *testing.T) {
	c := &clock{time.Now()}
	root := newRoot(t, c)
	acme, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	if acme.Cert.Subject.CommonName != "tenant-acme.ca.serviceradar" || !acme.Cert.IsCA || !acme.Cert.MaxPathLenZero {
		t.Fatalf("tenant CA: CN %q IsCA %v MaxPathLenZero %v", acme.Cert.Subject.CommonName, acme.Cert.IsCA, acme.Cert.MaxPathLenZero)
	}
	edge, err := acme.IssueEdgeClient("edge-1", "hq", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	if edge.Cert.Subject.CommonName != "edge-1.hq.acme.serviceradar" {
		t.Fatalf("edge CN = %q", edge.Cert.Subject.CommonName)
	}
	if pub, ok := edge.Cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("edge key is not ECDSA P-256: %T", edge.Cert.PublicKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter := x509.NewCertPool()
	for _, ic := range edge.Chain {
		inter.AddCert(ic)
	}
	chains, err := edge.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatalf("edge certificate does not verify: %v", err)
	}
	if got := chains[0][1].Subject.CommonName; got != "tenant-acme.ca.serviceradar" {
		t.Fatalf("edge issuer = %q", got)
	}
	// A tenant CA may not create further CAs (MaxPathLen 0).
	sub, err := acme.NewTenantCA("nested", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := sub.IssueEdgeClient("x", "default", "nested", 0)
	if err != nil {
		t.Fatal(err)
	}
	inter2 := x509.NewCertPool()
	for _, ic := range leaf.Chain {
		inter2.AddCert(ic)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter2, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a CA under a tenant CA verified; MaxPathLen 0 is not enforced")
	}
}

func TestSVIDAndServerCertificates(t *testing.T) {
	c := &clock{time.Now()}
	root := newRoot(t, c)
	td := spiffeid.RequireTrustDomainFromString("serviceradar.local")
	id, err := identity.FormatSPIFFEID(td, identity.ComponentSync, "acme", "default", "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	svid, err := root.IssueSVID(id, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := x509svid.Verify(append([]*x509.Certificate{svid.Cert}, svid.Chain...), x509bundle.FromX509Authorities(td, []*x509.Certificate{root.Cert}))
	if err != nil || got != id {
		t.Fatalf("SVID verify: %v %v", got, err)
	}
	// X.509 times have second precision.
	if life := svid.Cert.NotAfter.Sub(c.t); life > 10*time.Minute || life < 10*time.Minute-time.Second {
		t.Fatalf("SVID lifetime %s, want 10m", life)
	}
	srv, err := root.IssueServer(ca.ServerNames{DNSNames: []string{"gateway.serviceradar-system.svc"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	if _, err := root.IssueServer(ca.ServerNames{}, 0); err == nil {
		t.Fatal("a server certificate without names was issued")
	}
}

func TestLeafNeverOutlivesIssuer(t *testing.T) {
	c := &clock{time.Now()}
	root, err := ca.NewRoot("short-root", time.Hour, c.now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.IssueEdgeClient("e", "default", "acme", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Cert.NotAfter.After(root.Cert.NotAfter) {
		t.Fatalf("leaf expires %s after its issuer %s", leaf.Cert.NotAfter, root.Cert.NotAfter)
	}
}

func TestRenewalAtTwoThirds(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	root := newRoot(t, c)
	cert, err := root.IssueEdgeClient("e", "default", "acme", 55*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// NotBefore is back-dated 5 minutes, so the lifetime is 60 minutes and renewal is due 40 minutes after NotBefore.
	cases := []struct {
		after time.Duration
		want  bool
	}{{0, false}, {34 * time.Minute, false}, {35 * time.Minute, true}, {50 * time.Minute, true}}
	for _, tc := range cases {
		if got := ca.NeedsRenewal(cert.Cert, c.t.Add(tc.after)); got != tc.want {
			t.Errorf("NeedsRenewal at +%s = %v, want %v (renew at %s)", tc.after, got, tc.want, ca.RenewAt(cert.Cert))
		}
	}
}

func TestLoadRoundTripAndMismatch(t *testing.T) {
	c := &clock{time.Now()}
	root := newRoot(t, c)
	acme, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := acme.Key.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := ca.Load(acme.CertPEM(), keyPEM, c.now)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := loaded.IssueEdgeClient("e", "default", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Cert.CheckSignatureFrom(acme.Cert); err != nil {
		t.Fatalf("loaded CA signs differently: %v", err)
	}
	otherKey, _ := root.Key.MarshalPEM()
	if _, err := ca.Load(acme.CertPEM(), otherKey, c.now); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key accepted: %v", err)
	}
	if _, err := ca.Load(edge.CertPEM(), keyPEM, c.now); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf loaded as a CA: %v", err)
	}
}

func TestKeysNeverPrint(t *testing.T) {
	root := newRoot(t, &clock{time.Now()})
	edge, err := root.IssueEdgeClient("e", "default", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := edge.Key.MarshalPEM()
	secret := edge.Key.Signer().(*ecdsa.PrivateKey).D.String() //nolint:staticcheck // the test looks for the raw scalar
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{edge, *edge, edge.Key, root, *root} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, secret) || strings.Contains(out, string(keyPEM[40:80])) || strings.Contains(out, "PRIVATE KEY") {
				t.Errorf("fmt %s of %T prints key material", format, v)
			}
		}
	}
	if _, err := ca.Load(edge.CertPEM(), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil); err == nil || strings.Contains(err.Error(), "AAAA") {
		t.Fatalf("bad key error quotes key data: %v", err)
	}
}

// Certificate names fit RFC 5280's 64 characters for a CN, or are refused:
// the longest slug a Tenant may have fits the tenant CA's CN.
func TestCommonNamesFitTheirLimit(t *testing.T) {
	root := newRoot(t, &clock{time.Now()})
	longest := strings.Repeat("s", 32)
	if _, err := root.NewTenantCA(longest, 0); err != nil {
		t.Fatalf("a tenant CA for a slug of 32 characters: %v", err)
	}
	cases := []struct {
		name  string
		issue func() error
	}{
		{"tenant CA of a 42-character slug", func() error { _, err := root.NewTenantCA(strings.Repeat("s", 42), 0); return err }},
		{"edge certificate whose CN would have 65 characters", func() error {
			_, err := root.IssueEdgeClient(strings.Repeat("e", 64-len(".default.acme.serviceradar")+1), "default", "acme", 0)
			return err
		}},
		{"edge certificate of the longest slug and a long name", func() error {
			_, err := root.IssueEdgeClient("edge-datacenter-1", "default", longest, 0)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.issue(); !errors.Is(err, identity.ErrCommonNameLength) {
				t.Fatalf("issued, or refused for another reason: %v", err)
			}
		})
	}
	if _, err := root.IssueEdgeClient(strings.Repeat("e", 64-len(".default.acme.serviceradar")), "default", "acme", 0); err != nil {
		t.Fatalf("an edge CN of exactly 64 characters: %v", err)
	}
}

// Classify names the tenant CA whose key signed an edge certificate, not one
// that only carries the right name: a chain that offers the tenant's current
// CA next to the old CA that signed the leaf names the old one.
func TestClassifyNamesTheSigningTenantCA(t *testing.T) {
	root := newRoot(t, &clock{time.Now()})
	old, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	current, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := root.NewTenantCA("globex", 0)
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf, err := old.IssueEdgeClient("edge", "default", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	newLeaf, err := current.IssueEdgeClient("edge", "default", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := globex.IssueEdgeClient("edge", "default", "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := identity.NewClassifier("", "")
	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  string
	}{
		{"signed by the current CA", []*x509.Certificate{newLeaf.Cert, current.Cert}, identity.KeyFingerprint(current.Cert)},
		{"signed by the old CA", []*x509.Certificate{oldLeaf.Cert, old.Cert}, identity.KeyFingerprint(old.Cert)},
		{"signed by the old CA, current CA offered first", []*x509.Certificate{oldLeaf.Cert, current.Cert, old.Cert}, identity.KeyFingerprint(old.Cert)},
		{"signed by the old CA, only the current CA offered", []*x509.Certificate{oldLeaf.Cert, current.Cert}, ""},
		{"signed by another tenant's CA", []*x509.Certificate{foreign.Cert, globex.Cert}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := c.Classify(tc.chain)
			if err != nil {
				t.Fatal(err)
			}
			if id.Issuer != tc.want {
				t.Fatalf("issuer %q, want %q", id.Issuer, tc.want)
			}
		})
	}
	if identity.KeyFingerprint(old.Cert) == identity.KeyFingerprint(current.Cert) {
		t.Fatal("two tenant CAs share a key")
	}
}
