package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

var td = spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)

type pki struct {
	root, acme, globex *ca.Authority
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	root, err := ca.NewRoot("serviceradar-root", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	acme, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := root.NewTenantCA("globex", 0)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{root: root, acme: acme, globex: globex}
}

func spiffeID(t testing.TB, typ, tenant, component string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromSegments(td, typ, tenant, "default", component)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// server is a real gRPC server over mTLS whose handlers record the caller.
type server struct {
	addr    string
	mu      sync.Mutex
	calls   []identity.Identity
	serials []string // serial numbers of the callers' leaf certificates
}

func (s *server) callerSerials() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.serials...)
}

func (s *server) handled() []identity.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]identity.Identity(nil), s.calls...)
}

func startServer(t *testing.T, src mtls.Source) *server {
	t.Helper()
	classifier, _ := identity.NewClassifier("", "")
	s := &server{}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: src}))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := mtls.PeerIdentity(ctx, classifier)
			if err != nil {
				return nil, err
			}
			p, _ := peer.FromContext(ctx)
			s.mu.Lock()
			s.calls = append(s.calls, id)
			s.serials = append(s.serials, p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String())
			s.mu.Unlock()
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s
}

// call makes one RPC with a fresh connection and returns the server's leaf.
func call(t *testing.T, addr string, src mtls.Source, want mtls.ServerExpectation) (*x509.Certificate, error) {
	t.Helper()
	classifier, _ := identity.NewClassifier("", "")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, want))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0], nil
}

func TestMutualTLSClassifiesAndRefuses(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	gw, err := p.root.IssueSVID(spiffeID(t, "gateway", "platform", "gw-0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, pkitest.Source(t, filepath.Join(dir, "gateway"), gw, p.root.Cert))

	otherRoot, _ := ca.NewRoot("someone-else", 0, nil)
	otherAcme, _ := otherRoot.NewTenantCA("acme", 0)

	shifted := func(a *ca.Authority, by time.Duration) *ca.Authority {
		c := *a
		c.Now = func() time.Time { return time.Now().Add(by) }
		return &c
	}
	selfSigned, _ := ca.NewRoot("edge-1.hq.acme.serviceradar", time.Hour, nil)

	issue := func(f func() (*ca.Issued, error)) *ca.Issued {
		i, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	cases := []struct {
		name  string
		cert  *ca.Issued
		roots []*x509.Certificate
		want  *identity.Identity // nil: refused in the handshake
	}{
		{"sync SVID", issue(func() (*ca.Issued, error) { return p.root.IssueSVID(spiffeID(t, "sync", "acme", "w1"), time.Hour) }), nil,
			&identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme", Partition: "default", ComponentID: "w1"}},
		{"edge certificate from its tenant CA", issue(func() (*ca.Issued, error) { return p.acme.IssueEdgeClient("edge-1", "hq", "acme", time.Hour) }), nil,
			&identity.Identity{Class: identity.ClassEdge, TenantSlug: "acme", Partition: "hq", ComponentID: "edge-1"}},
		{"SVID with an unknown component type", issue(func() (*ca.Issued, error) { return p.root.IssueSVID(spiffeID(t, "robot", "acme", "r1"), time.Hour) }), nil, nil},
		{"edge CN for acme issued by globex's CA", issue(func() (*ca.Issued, error) { return p.globex.IssueEdgeClient("edge-1", "hq", "acme", time.Hour) }), nil, nil},
		{"edge CN issued directly by the root", issue(func() (*ca.Issued, error) { return p.root.IssueEdgeClient("edge-1", "hq", "acme", time.Hour) }), nil, nil},
		{"edge certificate from another root", issue(func() (*ca.Issued, error) { return otherAcme.IssueEdgeClient("edge-1", "hq", "acme", time.Hour) }), []*x509.Certificate{otherRoot.Cert, p.root.Cert}, nil},
		{"SVID from another root", issue(func() (*ca.Issued, error) { return otherRoot.IssueSVID(spiffeID(t, "sync", "acme", "w1"), time.Hour) }), []*x509.Certificate{otherRoot.Cert, p.root.Cert}, nil},
		{"SVID of another trust domain", issue(func() (*ca.Issued, error) {
			return p.root.IssueSVID(spiffeid.RequireFromString("spiffe://evil.example/sync/acme/default/w1"), time.Hour)
		}), nil, nil},
		{"expired edge certificate", issue(func() (*ca.Issued, error) {
			return shifted(p.acme, -48*time.Hour).IssueEdgeClient("edge-1", "hq", "acme", time.Hour)
		}), nil, nil},
		{"edge certificate not yet valid", issue(func() (*ca.Issued, error) {
			return shifted(p.acme, 48*time.Hour).IssueEdgeClient("edge-1", "hq", "acme", time.Hour)
		}), nil, nil},
		{"expired SVID", issue(func() (*ca.Issued, error) {
			return shifted(p.root, -48*time.Hour).IssueSVID(spiffeID(t, "sync", "acme", "w1"), time.Hour)
		}), nil, nil},
		{"self-signed certificate", &selfSigned.Issued, nil, nil},
		{"reserved platform slug from a tenant CA", issue(func() (*ca.Issued, error) {
			return p.acme.IssueEdgeClient("sync", "default", "platform", time.Hour)
		}), nil, nil},
		{"platform CN from the platform tenant CA", issue(func() (*ca.Issued, error) {
			platformCA, err := p.root.NewTenantCA("platform", 0)
			if err != nil {
				return nil, err
			}
			return platformCA.IssueEdgeClient("platform-sync", "default", "platform", time.Hour)
		}), nil, &identity.Identity{Class: identity.ClassPlatform, TenantSlug: "platform", Partition: "default", ComponentID: "platform-sync"}},
		{"edge CN with a malformed name", issue(func() (*ca.Issued, error) {
			// Issued by hand through a tenant CA with a CN of three labels.
			return p.acme.IssueServer(ca.ServerNames{DNSNames: []string{"edge.acme.serviceradar"}}, time.Hour)
		}), nil, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roots := tc.roots
			if roots == nil {
				roots = []*x509.Certificate{p.root.Cert}
			}
			src := pkitest.Source(t, filepath.Join(dir, "client", string(rune('a'+i))), tc.cert, roots...)
			before := len(srv.handled())
			_, err := call(t, srv.addr, src, mtls.ServerExpectation{})
			got := srv.handled()
			if tc.want == nil {
				if err == nil {
					t.Fatalf("call succeeded as %v", got[len(got)-1])
				}
				if len(got) != before {
					t.Fatal("a handler ran for a refused peer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id := got[len(got)-1]
			id.SPIFFEID = spiffeid.ID{}
			// A CN identity names the tenant CA that signed it.
			if (id.Issuer != "") != (tc.want.ComponentType == identity.ComponentUnspecified) {
				t.Fatalf("issuer %q of %v", id.Issuer, id)
			}
			id.Issuer = ""
			// and carries its issuance time.
			if (id.IssuedAt != 0) != (tc.want.ComponentType == identity.ComponentUnspecified && !id.Upstream) {
				t.Fatalf("issued at %d of %v", id.IssuedAt, id)
			}
			id.IssuedAt = 0
			if id != *tc.want {
				t.Fatalf("classified as %+v, want %+v", id, *tc.want)
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		before := len(srv.handled())
		conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // the test only checks that the server refuses
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("a client without certificate was served")
		}
		if len(srv.handled()) != before {
			t.Fatal("a handler ran without a client certificate")
		}
	})
}

func TestClientAcceptsOnlyTheExpectedGateway(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	notGateway, _ := p.root.IssueSVID(spiffeID(t, "sync", "platform", "impostor"), time.Hour)
	impostor := startServer(t, pkitest.Source(t, filepath.Join(dir, "impostor"), notGateway, p.root.Cert))
	gwID := spiffeID(t, "gateway", "platform", "gw-0")
	gwCert, _ := p.root.IssueSVID(gwID, time.Hour)
	gateway := startServer(t, pkitest.Source(t, filepath.Join(dir, "gateway"), gwCert, p.root.Cert))
	dnsCert, _ := p.root.IssueServer(ca.ServerNames{DNSNames: []string{"gateway.example"}}, time.Hour)
	dnsGateway := startServer(t, pkitest.Source(t, filepath.Join(dir, "dns"), dnsCert, p.root.Cert))

	edge, _ := p.acme.IssueEdgeClient("edge-1", "hq", "acme", time.Hour)
	client := pkitest.Source(t, filepath.Join(dir, "client"), edge, p.root.Cert)

	cases := []struct {
		name string
		addr string
		want mtls.ServerExpectation
		ok   bool
		err  error
	}{
		{"any gateway SVID", gateway.addr, mtls.ServerExpectation{}, true, nil},
		{"the exact gateway SVID", gateway.addr, mtls.ServerExpectation{SPIFFEID: gwID}, true, nil},
		{"another gateway ID expected", gateway.addr, mtls.ServerExpectation{SPIFFEID: spiffeID(t, "gateway", "platform", "gw-1")}, false, mtls.ErrServerIdentity},
		{"a sync SVID posing as gateway", impostor.addr, mtls.ServerExpectation{}, false, mtls.ErrServerIdentity},
		{"DNS server certificate with its name", dnsGateway.addr, mtls.ServerExpectation{ServerName: "gateway.example"}, true, nil},
		{"DNS server certificate with another name", dnsGateway.addr, mtls.ServerExpectation{ServerName: "other.example"}, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, tc.addr, client, tc.want)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.err != nil && !errors.Is(err, tc.err) && !containsErr(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// containsErr matches a wrapped error's text, since gRPC flattens transport
// errors into a status message.
func containsErr(err, want error) bool {
	return err != nil && strings.Contains(err.Error(), want.Error())
}

func TestFileSourceReloadsRotatedCertificates(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	gw1, _ := p.root.IssueSVID(spiffeID(t, "gateway", "platform", "gw-0"), time.Hour)
	src := pkitest.Source(t, filepath.Join(dir, "gateway"), gw1, p.root.Cert)
	srv := startServer(t, src)
	edge, _ := p.acme.IssueEdgeClient("edge-1", "hq", "acme", time.Hour)
	client := pkitest.Source(t, filepath.Join(dir, "client"), edge, p.root.Cert)

	leaf, err := call(t, srv.addr, client, mtls.ServerExpectation{})
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(gw1.Cert.SerialNumber) != 0 {
		t.Fatal("server did not present its first certificate")
	}
	gw2, _ := p.root.IssueSVID(spiffeID(t, "gateway", "platform", "gw-0"), time.Hour)
	pkitest.Source(t, filepath.Join(dir, "gateway"), gw2, p.root.Cert) // same paths, new content
	// The source reloads on a new size or modification time: make sure the
	// rewrite shows even where the clock is coarser than the two writes.
	later := time.Now().Add(time.Second)
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Chtimes(filepath.Join(dir, "gateway", f), later, later); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err = call(t, srv.addr, client, mtls.ServerExpectation{})
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(gw2.Cert.SerialNumber) != 0 {
		t.Fatalf("server presents serial %s after rotation, want %s", leaf.SerialNumber, gw2.Cert.SerialNumber)
	}

	// A broken write keeps the last good certificate in use.
	if err := os.WriteFile(filepath.Join(dir, "gateway", "tls.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err = call(t, srv.addr, client, mtls.ServerExpectation{})
	if err != nil {
		t.Fatalf("a broken key file took the server down: %v", err)
	}
	if leaf.SerialNumber.Cmp(gw2.Cert.SerialNumber) != 0 {
		t.Fatal("server lost its last good certificate")
	}
}
