package mtls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// issueAs signs a client certificate with any CN or SPIFFE ID under a CA,
// as ServiceRadar's own tooling issues its certificates.
func issueAs(t *testing.T, issuer *ca.Authority, cn, spiffe string) *ca.Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if spiffe != "" {
		u, err := url.Parse(spiffe)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &key.PublicKey, issuer.Key.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ca.ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: raw}))
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Issued{Cert: cert, Key: k}
}

// startUpstreamServer is a gRPC server over mTLS whose classifier maps
// upstream-format identities issued by upstreamCAs to acme (none when
// upstreamCAs is nil); it records what each call classified.
func startUpstreamServer(t *testing.T, src mtls.Source, upstreamCAs []*x509.Certificate) (string, func() []identity.Identity) {
	t.Helper()
	classifier, _ := identity.NewClassifier("", "")
	if upstreamCAs != nil {
		var err error
		if classifier, err = classifier.WithUpstream("acme", ""); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var calls []identity.Identity
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: src, UpstreamCAs: upstreamCAs}))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := mtls.PeerIdentity(ctx, classifier)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			calls = append(calls, id)
			mu.Unlock()
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), func() []identity.Identity {
		mu.Lock()
		defer mu.Unlock()
		return append([]identity.Identity(nil), calls...)
	}
}

// TestUpstreamIdentitiesMapToTheConfiguredTenantOnly performs the handshake
// with certificates in ServiceRadar's own format: issued by the configured
// upstream CA they are the configured tenant and nothing else; from any
// other CA, in this system's own format, or with the mapping off, they are
// refused in the handshake.
func TestUpstreamIdentitiesMapToTheConfiguredTenantOnly(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	gw, err := p.root.IssueSVID(spiffeID(t, "gateway", "platform", "gw-0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverSrc := pkitest.Source(t, filepath.Join(dir, "gateway"), gw, p.root.Cert)
	upstream, _ := ca.NewRoot("serviceradar-upstream-root", 0, nil)
	rogue, _ := ca.NewRoot("rogue-root", 0, nil)
	mapped, mappedCalls := startUpstreamServer(t, serverSrc, []*x509.Certificate{upstream.Cert})
	unmapped, _ := startUpstreamServer(t, serverSrc, nil)

	acme := func(class identity.Class, typ identity.ComponentType, partition, component string) *identity.Identity {
		return &identity.Identity{Class: class, ComponentType: typ, TenantSlug: "acme", Partition: partition, ComponentID: component, Upstream: true}
	}
	cases := []struct {
		name   string
		cert   *ca.Issued
		server string
		want   *identity.Identity // nil: refused in the handshake
	}{
		{"upstream edge CN from the upstream CA", issueAs(t, upstream, "agent-1.default.serviceradar", ""), mapped,
			acme(identity.ClassEdge, identity.ComponentUnspecified, "default", "agent-1")},
		{"upstream agent SVID from the upstream CA", issueAs(t, upstream, "", "spiffe://serviceradar.local/agent/dc1/agent-7"), mapped,
			acme(identity.ClassPlatform, identity.ComponentAgent, "dc1", "agent-7")},
		{"upstream CN whose labels name another tenant", issueAs(t, upstream, "globex.globex.serviceradar", ""), mapped,
			acme(identity.ClassEdge, identity.ComponentUnspecified, "globex", "globex")},
		{"upstream CN from another CA", issueAs(t, rogue, "agent-1.default.serviceradar", ""), mapped, nil},
		{"upstream CN from the platform root", issueAs(t, p.root, "agent-1.default.serviceradar", ""), mapped, nil},
		{"upstream CN from a tenant CA", issueAs(t, p.globex, "agent-1.default.serviceradar", ""), mapped, nil},
		{"upstream SVID from another CA", issueAs(t, rogue, "", "spiffe://serviceradar.local/agent/default/agent-1"), mapped, nil},
		{"upstream SVID of another trust domain", issueAs(t, upstream, "", "spiffe://evil.example/agent/default/agent-1"), mapped, nil},
		{"upstream CA issuing a tenant CN for globex", issueAs(t, upstream, "edge.hq.globex.serviceradar", ""), mapped, nil},
		{"upstream CA issuing a tenant SVID for globex", issueAs(t, upstream, "", "spiffe://serviceradar.local/sync/globex/default/w"), mapped, nil},
		{"upstream CA issuing a platform CN", issueAs(t, upstream, "platform-sync.default.platform.serviceradar", ""), mapped, nil},
		{"upstream CN with the mapping off", issueAs(t, upstream, "agent-1.default.serviceradar", ""), unmapped, nil},
		{"upstream SVID with the mapping off", issueAs(t, upstream, "", "spiffe://serviceradar.local/agent/default/agent-1"), unmapped, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := pkitest.Source(t, filepath.Join(dir, fmt.Sprint("client-", i)), tc.cert, p.root.Cert)
			before := len(mappedCalls())
			_, err := call(t, tc.server, src, mtls.ServerExpectation{})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted: %v", mappedCalls()[before:])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := mappedCalls()[before]
			got.SPIFFEID = spiffeid.ID{}
			if got != *tc.want {
				t.Fatalf("classified %+v, want %+v", got, *tc.want)
			}
		})
	}
}
