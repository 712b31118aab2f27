package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

// upstreamCert issues a client certificate in ServiceRadar's own format
// (any CN, an optional SPIFFE ID) under issuer.
func upstreamCert(t *testing.T, issuer *ca.Authority, cn, spiffe string) *ca.Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if spiffe != "" {
		u, _ := url.Parse(spiffe)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &key.PublicKey, issuer.Key.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	raw, _ := x509.MarshalECPrivateKey(key)
	k, err := ca.ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: raw}))
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Issued{Cert: cert, Key: k}
}

// TestUpstreamIdentitiesReachOnlyTheirMappedTenant runs the gateway with
// --upstream-tenant acme and two tenants that both have an edge worker
// "edge" in partition hq: callers with upstream-format certificates from the
// upstream CA are acme's, whatever they send, and never see globex.
func TestUpstreamIdentitiesReachOnlyTheirMappedTenant(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := map[string]string{"acme": "112005d8-e7e8-5ad5-ae5b-58baa049377d", "globex": "5b0c8c3e-2c38-5f0e-9d3c-7f3e0b1e2a11"}
	for slug, id := range ids {
		tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}}
		if err := env.Client.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
		tn.Status.TenantID = id
		if err := env.Client.Status().Update(ctx, tn); err != nil {
			t.Fatal(err)
		}
		ns, err := env.TenantNamespace(ctx, slug, slug)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []client.Object{
			&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: slug + "-faker", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationFaker, Partition: "hq", SyncServiceRef: v1alpha1.SyncServiceReference{Name: "edge"},
				Faker: &v1alpha1.FakerSpec{Devices: 10}, Sweep: &v1alpha1.SweepSpec{Enabled: true}}},
		} {
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}

	root, _ := ca.NewRoot("root", 0, nil)
	upstream, _ := ca.NewRoot("serviceradar-upstream-root", 0, nil)
	dir := t.TempDir()
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw-0"), time.Hour)
	gwFiles := pkitest.Write(t, filepath.Join(dir, "gw"), gw, root.Cert)
	upstreamCA := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(upstreamCA, (&ca.Issued{Cert: upstream.Cert}).CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	kube, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	gctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(gctx, app.Config{Kube: kube.Config(), Listen: "127.0.0.1:0", CertFile: gwFiles.Cert, KeyFile: gwFiles.Key, CAFile: gwFiles.CA,
			GatewayID: "gw-0", Log: logr.Discard(), UpstreamTenant: "acme", UpstreamCAFile: upstreamCA, Ready: func(addr string) { ready <- addr }})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("gateway did not start")
	}
	dial := func(name string, issued *ca.Issued) pb.AgentGatewayServiceClient {
		t.Helper()
		classifier, _ := identity.NewClassifier("", "")
		src := pkitest.Source(t, filepath.Join(dir, name), issued, root.Cert)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return pb.NewAgentGatewayServiceClient(conn)
	}

	t.Run("an upstream edge worker is acme's edge worker", func(t *testing.T) {
		c := dial("edge", upstreamCert(t, upstream, "edge.hq.serviceradar", ""))
		hello, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "edge", Labels: map[string]string{"tenant_slug": "globex"}})
		if err != nil || hello.TenantSlug != "acme" || hello.TenantId != ids["acme"] {
			t.Fatalf("hello %+v %v", hello, err)
		}
		var b bundle.Sync
		test.Eventually(t, "acme's source in the bundle", 30*time.Second, func() bool {
			cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "edge"})
			if err != nil {
				t.Fatal(err)
			}
			b = bundle.Sync{}
			return json.Unmarshal(cfg.ConfigJson, &b) == nil && len(b.Sources) == 1
		})
		for k := range b.Sources {
			if !strings.HasPrefix(k, "acme-") || b.TenantSlug != "acme" {
				t.Fatalf("bundle %+v", b)
			}
		}
		// Tenant fields naming globex are refused, not followed.
		_, err = c.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "edge", TenantSlug: "globex"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("PushStatus naming globex: %v", err)
		}
	})
	t.Run("an upstream agent gets acme's sweep and nothing of globex", func(t *testing.T) {
		c := dial("agent", upstreamCert(t, upstream, "", "spiffe://serviceradar.local/agent/hq/agent-1"))
		cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-1"})
		if err != nil {
			t.Fatal(err)
		}
		var got bundle.Agent
		if err := json.Unmarshal(cfg.ConfigJson, &got); err != nil || got.TenantSlug != "acme" || got.TenantID != ids["acme"] {
			t.Fatalf("agent config %s %v", cfg.ConfigJson, err)
		}
		if strings.Contains(string(cfg.ConfigJson), "globex") || strings.Contains(string(cfg.ConfigJson), ids["globex"]) {
			t.Fatalf("globex in acme's agent config: %s", cfg.ConfigJson)
		}
		if _, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "edge"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("the agent asking as another component: %v", err)
		}
	})
	// Issue 16 item 4: an agent with an edge certificate (CN
	// <component>.<partition>.serviceradar, no SyncService of that name) is
	// served as an agent on every call, with exactly the sweep a SPIFFE agent
	// of its tenant and partition gets.
	t.Run("an upstream edge agent gets its partition's sweep on every call", func(t *testing.T) {
		sweepOf := func(c pb.AgentGatewayServiceClient, agentID string) bundle.Agent {
			t.Helper()
			cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: agentID})
			if err != nil {
				t.Fatalf("GetConfig of %s: %v", agentID, err)
			}
			if strings.Contains(string(cfg.ConfigJson), "globex") || strings.Contains(string(cfg.ConfigJson), ids["globex"]) {
				t.Fatalf("globex in acme's agent config: %s", cfg.ConfigJson)
			}
			var got bundle.Agent
			if err := json.Unmarshal(cfg.ConfigJson, &got); err != nil || got.Scope != bundle.ScopeAgent || got.TenantSlug != "acme" || got.TenantID != ids["acme"] {
				t.Fatalf("agent config of %s: %s %v", agentID, cfg.ConfigJson, err)
			}
			return got
		}
		spiffeAgent := sweepOf(dial("spiffe-agent", upstreamCert(t, upstream, "", "spiffe://serviceradar.local/agent/hq/agent-1")), "agent-1")
		if len(spiffeAgent.Sweep.Groups) != 1 {
			t.Fatalf("the SPIFFE agent of hq has %d sweep groups, want acme-faker's", len(spiffeAgent.Sweep.Groups))
		}

		probe := dial("edge-agent", upstreamCert(t, upstream, "probe-1.hq.serviceradar", ""))
		hello, err := probe.Hello(ctx, &pb.AgentHelloRequest{AgentId: "probe-1", Labels: map[string]string{"tenant_slug": "globex"}})
		if err != nil || !hello.Accepted || hello.TenantSlug != "acme" || hello.TenantId != ids["acme"] {
			t.Fatalf("the edge agent's hello: %+v %v", hello, err)
		}
		edgeAgent := sweepOf(probe, "probe-1")
		if edgeAgent.AgentID != "probe-1" || edgeAgent.Partition != "hq" || !reflect.DeepEqual(edgeAgent.Sweep, spiffeAgent.Sweep) {
			t.Fatalf("the edge agent's sweep %+v, want the SPIFFE agent's %+v", edgeAgent, spiffeAgent)
		}
		st, err := probe.ControlStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "probe-1"}}}); err != nil {
			t.Fatal(err)
		}
		msg, err := st.Recv()
		var pushed bundle.Agent
		if err != nil || json.Unmarshal(msg.GetConfig().GetConfigJson(), &pushed) != nil || !reflect.DeepEqual(pushed.Sweep, spiffeAgent.Sweep) {
			t.Fatalf("the edge agent's control stream: %v %v", msg, err)
		}
		_ = st.CloseSend()
		if _, err := probe.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-1"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("the edge agent asking as another agent: %v", err)
		}

		// An edge agent of another partition gets none of hq's sweep.
		other := sweepOf(dial("edge-agent-default", upstreamCert(t, upstream, "probe-2.default.serviceradar", "")), "probe-2")
		if other.Partition != "default" || len(other.Sweep.Groups) != 0 {
			t.Fatalf("an edge agent of partition default got %+v", other.Sweep)
		}
	})
	t.Run("tenant-format certificates from the upstream CA are refused", func(t *testing.T) {
		for name, cert := range map[string]*ca.Issued{
			"globex CN":   upstreamCert(t, upstream, "edge.hq.globex.serviceradar", ""),
			"globex SVID": upstreamCert(t, upstream, "", "spiffe://serviceradar.local/sync/globex/hq/edge"),
		} {
			c := dial(strings.ReplaceAll(name, " ", "-"), cert)
			if _, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "edge"}); status.Code(err) != codes.Unavailable {
				t.Fatalf("%s: %v, want a failed handshake", name, err)
			}
		}
	})
}
