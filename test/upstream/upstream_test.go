package upstream_test

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
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/test/upstream"
)

// gatewayBinary is the gateway built for this test process.
var gatewayBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "upstream-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatewayBinary = filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-o", gatewayBinary, "./cmd/gateway")
	build.Dir, build.Stdout, build.Stderr = test.RepoRoot(), os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the gateway:", err)
		os.Exit(1)
	}
	code := pgtest.Run(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// issue signs a client certificate in ServiceRadar's own format (a CN and
// an optional SPIFFE ID, no tenant) under an upstream CA.
func issue(t *testing.T, issuer *ca.Authority, cn, spiffe string) *ca.Issued {
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

// TestUpstreamAgentAgainstTheGatewayBinary runs an upstream-style agent
// (test/upstream) with an upstream-format certificate against the gateway
// binary over mTLS with PostgreSQL, mapped to tenant acme: Hello and
// GetConfig are accepted, its sweep arrives in config_json's group form
// with the devices of acme's sweep-enabled source, a failed call makes it
// reconnect and the next one works, and its ControlStream is served and
// stays open instead of looping every 5 s.
func TestUpstreamAgentAgainstTheGatewayBinary(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const acmeID = "112005d8-e7e8-5ad5-ae5b-58baa049377d"
	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
	if err := env.Client.Create(ctx, tn); err != nil {
		t.Fatal(err)
	}
	tn.Status.TenantID = acmeID
	if err := env.Client.Status().Update(ctx, tn); err != nil {
		t.Fatal(err)
	}
	ns, err := env.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationFaker, Partition: "default", SyncServiceRef: v1alpha1.SyncServiceReference{Name: "edge"},
		Faker: &v1alpha1.FakerSpec{Devices: 3},
		Sweep: &v1alpha1.SweepSpec{Enabled: true, Modes: []v1alpha1.SweepMode{"icmp", "tcp"}, Ports: []int32{22},
			Interval: &metav1.Duration{Duration: 10 * time.Minute}}}}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}},
		src,
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The source's devices, as a worker's run would have stored them.
	dsn := pgtest.NewDatabase(t)
	devices, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	seg := store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker", SourceUID: string(src.UID),
		SyncServiceID: "ss", AgentID: "edge", RunID: uuid.NewString(), RunComplete: true, FullFetch: true}
	for i := range 3 {
		seg.Devices = append(seg.Devices, store.Device{DeviceID: fmt.Sprint(i), IP: fmt.Sprintf("10.60.0.%d", i+1),
			Metadata: map[string]string{"integration_type": "faker", "faker_device_id": fmt.Sprint(i)}})
	}
	if _, err := devices.ApplySegment(ctx, seg); err != nil {
		t.Fatal(err)
	}
	devices.Close()

	root, _ := ca.NewRoot("root", 0, nil)
	upstreamCA, _ := ca.NewRoot("serviceradar-upstream-root", 0, nil)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, (&ca.Issued{Cert: upstreamCA.Cert}).CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBinary, Dir: dir, Env: env, Root: root, PostgresDSN: dsn,
		Args: []string{"--upstream-tenant=acme", "--upstream-ca-file=" + caFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()

	classifier, _ := identity.NewClassifier("", "")
	source := pkitest.Source(t, filepath.Join(dir, "agent"), issue(t, upstreamCA, "", "spiffe://serviceradar.local/agent/default/agent-1"), root.Cert)
	agent := upstream.New(upstream.Config{Target: gw.Addr, AgentID: "agent-1", Partition: "default", Version: "1.2.3", Hostname: "edge-host",
		OS: "linux", Arch: "amd64", ControlStreamRetry: 200 * time.Millisecond, Log: logr.Discard(),
		TLS: mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: source}, mtls.ServerExpectation{})})
	defer agent.Close()

	hello, err := agent.Hello(ctx, "")
	if err != nil || !hello.GetAccepted() || !hello.GetConfigOutdated() {
		t.Fatalf("Hello: %+v %v", hello, err)
	}
	var sweep *upstream.Sweep
	var cfg *pb.AgentConfigResponse
	test.Eventually(t, "the agent's sweep has the source's devices", time.Minute, func() bool {
		if cfg, err = agent.GetConfig(ctx, "", ""); err != nil {
			t.Fatal(err)
		}
		if sweep, err = upstream.ParseSweep(cfg.GetConfigJson()); err != nil {
			t.Fatal(err)
		}
		return sweep != nil && len(sweep.Groups) == 1 && len(sweep.Groups[0].DeviceTargets) == 3
	})
	g := sweep.Groups[0]
	if got := fmt.Sprint(g.SweepGroupID, g.Networks, g.Ports, g.Modes, g.ScheduleType, g.Interval); got !=
		fmt.Sprint(string(src.UID), []string{"10.60.0.1/32", "10.60.0.2/32", "10.60.0.3/32"}, []int{22}, []string{"icmp", "tcp"}, "interval", 10*time.Minute) {
		t.Fatalf("sweep group %s", got)
	}
	if sweep.ConfigHash == "" {
		t.Fatal("no config_hash")
	}

	// A failed call: upstream drops the connection; the next call dials again and works.
	dials := agent.Dials()
	if _, err := agent.GetConfig(ctx, "someone-else", ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetConfig as another component: %v", err)
	}
	again, err := agent.GetConfig(ctx, "", cfg.GetConfigVersion())
	if err != nil || !again.GetNotModified() || agent.Dials() != dials+1 {
		t.Fatalf("after a failed call: %+v %v, dials %d -> %d", again, err, dials, agent.Dials())
	}

	// The ControlStream is served: the config arrives and the stream stays open.
	pushed := make(chan *pb.AgentConfigResponse, 4)
	sctx, stop := context.WithCancel(ctx)
	looped := make(chan struct{})
	go func() {
		defer close(looped)
		agent.RunControlStream(sctx, func(c *pb.AgentConfigResponse) { pushed <- c })
	}()
	defer func() { stop(); <-looped }()
	select {
	case c := <-pushed:
		if c.GetConfigVersion() != cfg.GetConfigVersion() {
			t.Fatalf("pushed version %s, GetConfig gave %s", c.GetConfigVersion(), cfg.GetConfigVersion())
		}
	case <-ctx.Done():
		t.Fatal("no config on the control stream")
	}
	// One more unary call on the same connection proves the stream's
	// connection is still there; the stream itself never failed.
	if _, err := agent.Hello(ctx, cfg.GetConfigVersion()); err != nil {
		t.Fatal(err)
	}
	if attempts, open := agent.ControlStats(); attempts != 1 || !open {
		t.Fatalf("control stream attempts %d, open %v: the agent is looping", attempts, open)
	}
}
