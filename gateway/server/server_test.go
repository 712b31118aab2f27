package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	testingclock "k8s.io/utils/clock/testing"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = kubetest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := errors.Join(env.Stop(), pgtest.Stop()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// world is two tenants served by the platform sync and by their own edges.
type world struct {
	root      *ca.Authority
	tenantCA  map[string]*ca.Authority
	ns        map[string]string
	tenantID  map[string]string
	addr      string
	logs      *syncBuffer
	clock     *testingclock.FakeClock // the gateways' clock, moved by the test
	srv       *server.Server
	metrics   *server.Metrics
	store     *store.Store
	dsn       string // the store's database
	informers ctrlcache.Cache
	// replica is a second gateway replica on the same cache and API server.
	replica        string
	replicaMetrics *server.Metrics
	forbidden      []string // globex's names, uids, queries, endpoints and credentials

	// serve starts one more replica on the world's cache, store and API
	// server, its options changed by mutate.
	serve func(gatewayID string, m *server.Metrics, mutate ...func(*server.Options)) (*server.Server, string)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(line + "\n")
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func setStatusTenantID(t *testing.T, tn *v1alpha1.Tenant, id string) {
	t.Helper()
	tn.Status.TenantID = id
	if err := env.Client.Status().Update(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{tenantCA: map[string]*ca.Authority{}, ns: map[string]string{}, logs: &syncBuffer{}, clock: testingclock.NewFakeClock(time.Now()),
		tenantID: map[string]string{"platform": "267967d7-c702-4a69-a809-1c5c91c26f5a", "acme": "112005d8-e7e8-5ad5-ae5b-58baa049377d", "globex": "5b0c8c3e-2c38-5f0e-9d3c-7f3e0b1e2a11"}}
	var err error
	if w.root, err = ca.NewRoot("root", 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, slug := range []string{"platform", "acme", "globex", "initech"} {
		if w.tenantCA[slug], err = w.root.NewTenantCA(slug, 0); err != nil {
			t.Fatal(err)
		}
		tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug, Platform: slug == "platform"}}
		create(t, tn)
		if id := w.tenantID[slug]; id != "" { // initech is not onboarded: no tenant ID
			tn.Status.CAFingerprint = identity.KeyFingerprint(w.tenantCA[slug].Cert) // as the manager publishes it
			setStatusTenantID(t, tn, id)
		}
		if w.ns[slug], err = env.TenantNamespace(ctx, slug, slug); err != nil {
			t.Fatal(err)
		}
	}
	platformRef := v1alpha1.SyncServiceReference{Namespace: w.ns["platform"], Name: "platform-sync"}
	create(t, &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: w.ns["platform"]}, Spec: v1alpha1.SyncServiceSpec{Platform: true}})
	// Each tenant's names and queries are its own, so that a leak can be told apart.
	edgeName := map[string]string{"acme": "edge", "globex": "globex-edge"}
	var globex []client.Object
	for _, slug := range []string{"acme", "globex"} {
		ns := w.ns[slug]
		objs := []client.Object{
			&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: edgeName[slug], Namespace: ns}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: ns}, Data: map[string][]byte{"secret_key": []byte(slug + "-armis-secret-value")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "netbox", Namespace: ns}, Data: map[string][]byte{"api_token": []byte(slug + "-netbox-token-value")}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: slug + "-armis", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationArmis, Endpoint: "https://" + slug + "-armis.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"},
				SyncServiceRef: platformRef, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices " + slug + "-armis-query"}},
				MaxRetractPercent: new(int32(100))}}, // these tests retract freely: the brake has its own test
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: slug + "-netbox", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationNetBox, Endpoint: "https://" + slug + "-netbox.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
				SyncServiceRef: v1alpha1.SyncServiceReference{Name: edgeName[slug]}, Partition: "hq", Queries: []v1alpha1.Query{{Label: "all", Query: slug + "-netbox-query"}}}},
		}
		create(t, objs...)
		if slug == "globex" {
			globex = objs
		}
	}
	w.forbidden = []string{"globex-armis-secret-value", "globex-netbox-token-value", "globex-armis.example", "globex-netbox.example",
		"globex-armis", "globex-netbox", "globex-edge", "globex-armis-query", "globex-netbox-query", w.ns["globex"], w.tenantID["globex"]}
	for _, o := range globex {
		if _, secret := o.(*corev1.Secret); !secret {
			w.forbidden = append(w.forbidden, string(o.GetUID()))
		}
	}

	// The gateway: its own SVID, trusting the root for SVIDs and edge certificates.
	dir := t.TempDir()
	gw, err := w.root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw-0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src := pkitest.Source(t, filepath.Join(dir, "gw"), gw, w.root.Cert)
	classifier, _ := identity.NewClassifier("", "")
	// Every verbosity is captured: debug lines must not leak either.
	logger := funcr.New(func(prefix, args string) { w.logs.write(prefix + " " + args) }, funcr.Options{Verbosity: 10})
	// As in the gateway binary: CRs and namespaces from an informer cache,
	// each referenced Secret watched by name.
	informers, err := ctrlcache.New(env.Config, catalog.CacheOptions(env.Scheme))
	if err != nil {
		t.Fatal(err)
	}
	w.informers = informers
	w.dsn = pgtest.NewDatabase(t)
	devices, err := store.Open(ctx, w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(devices.Close)
	w.store = devices
	cctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	// Two replicas share the cache, the API server, the store and the clock.
	serve := func(gatewayID string, m *server.Metrics, mutate ...func(*server.Options)) (*server.Server, string) {
		o := server.Options{Classifier: classifier, Reader: informers, Secrets: kubernetes.NewForConfigOrDie(env.Config).CoreV1(), Status: env.Client, Store: devices,
			PlatformSlug: "platform", GatewayID: gatewayID, Log: logger.WithValues("gateway", gatewayID), Clock: w.clock, Metrics: m}
		for _, f := range mutate {
			f(&o)
		}
		srv := server.New(o)
		if err := srv.WatchCluster(cctx, informers); err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: src}))),
			grpc.InTapHandle(server.InTapHandle))
		pb.RegisterAgentGatewayServiceServer(gs, srv)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = gs.Serve(lis) }()
		t.Cleanup(gs.Stop)
		return srv, lis.Addr().String()
	}
	w.serve = serve
	w.metrics, w.replicaMetrics = server.NewMetrics(), server.NewMetrics()
	w.srv, w.addr = serve("gw-0", w.metrics)
	_, w.replica = serve("gw-1", w.replicaMetrics)
	go func() { _ = informers.Start(cctx) }()
	if !informers.WaitForCacheSync(cctx) {
		t.Fatal("cache did not sync")
	}
	return w
}

func (w *world) client(t *testing.T, issued *ca.Issued) pb.AgentGatewayServiceClient {
	t.Helper()
	return w.clientOf(t, w.addr, issued)
}

// clientOf is a client of the replica at addr.
func (w *world) clientOf(t *testing.T, addr string, issued *ca.Issued) pb.AgentGatewayServiceClient {
	t.Helper()
	classifier, _ := identity.NewClassifier("", "")
	src := pkitest.Source(t, filepath.Join(t.TempDir(), "client"), issued, w.root.Cert)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewAgentGatewayServiceClient(conn)
}

func svid(t *testing.T, w *world, path string) *ca.Issued {
	t.Helper()
	i, err := w.root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/"+path), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func edge(t *testing.T, w *world, issuer, component, partition, slug string) *ca.Issued {
	t.Helper()
	i, err := w.tenantCA[issuer].IssueEdgeClient(component, partition, slug, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestConfigPlane(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	served := []struct {
		name     string
		cert     *ca.Issued
		agentID  string
		sources  []string
		credKeys []string
	}{
		{"platform worker of acme", svid(t, w, "sync/acme/default/platform-sync-acme"), "platform-sync-acme", []string{w.ns["acme"] + "/acme-armis"}, []string{"acme-armis-secret-value"}},
		{"acme's edge worker", edge(t, w, "acme", "edge", "hq", "acme"), "edge", []string{w.ns["acme"] + "/acme-netbox"}, []string{"acme-netbox-token-value"}},
	}
	for _, tc := range served {
		t.Run(tc.name, func(t *testing.T) {
			c := w.client(t, tc.cert)
			// Tenant hints in request fields are ignored: the certificate decides.
			hello, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: tc.agentID, Labels: map[string]string{"tenant_slug": "globex"}, Partition: "hq"})
			if err != nil {
				t.Fatal(err)
			}
			if !hello.Accepted || hello.TenantSlug != "acme" || hello.TenantId != w.tenantID["acme"] || !hello.ConfigOutdated || hello.HeartbeatIntervalSec != 30 {
				t.Fatalf("hello %+v", hello)
			}
			cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: tc.agentID})
			if err != nil {
				t.Fatal(err)
			}
			var b bundle.Sync
			if err := json.Unmarshal(cfg.ConfigJson, &b); err != nil {
				t.Fatal(err)
			}
			if len(b.Sources) != len(tc.sources) {
				t.Fatalf("sources %v, want %v", keys(b.Sources), tc.sources)
			}
			for i, k := range tc.sources {
				s, ok := b.Sources[k]
				if !ok || s.Credentials[map[string]string{"armis": "secret_key", "netbox": "api_token"}[s.Type]] != tc.credKeys[i] {
					t.Fatalf("source %s: %+v", k, s)
				}
			}
			assertNoLeak(t, w, string(cfg.ConfigJson))
			again, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: tc.agentID, ConfigVersion: cfg.ConfigVersion})
			if err != nil || !again.NotModified || again.ConfigVersion != cfg.ConfigVersion || len(again.ConfigJson) != 0 {
				t.Fatalf("second GetConfig %+v %v, want not_modified", again, err)
			}
			hello, err = c.Hello(ctx, &pb.AgentHelloRequest{AgentId: tc.agentID, ConfigVersion: cfg.ConfigVersion})
			if err != nil || hello.ConfigOutdated {
				t.Fatalf("hello with the current version: %+v %v", hello, err)
			}
		})
	}

	refused := []struct {
		name    string
		cert    *ca.Issued
		agentID string
		code    codes.Code
	}{
		{"acme worker asking as globex's worker", svid(t, w, "sync/acme/default/platform-sync-acme"), "platform-sync-globex", codes.PermissionDenied},
		{"acme edge asking as globex's edge id", edge(t, w, "acme", "edge", "hq", "acme"), "globex-edge", codes.PermissionDenied},
		{"agent identity with another component's agent_id", svid(t, w, "agent/acme/default/agent-1"), "platform-sync-acme", codes.PermissionDenied},
		{"agent of a tenant not onboarded", svid(t, w, "agent/initech/default/agent-1"), "agent-1", codes.PermissionDenied},
		{"sync identity with an unknown component", svid(t, w, "sync/acme/default/nobody"), "nobody", codes.PermissionDenied},
		{"SVID posing as the on-prem worker", svid(t, w, "sync/acme/hq/edge"), "edge", codes.PermissionDenied},
		{"edge component not onboarded", edge(t, w, "acme", "rogue", "hq", "acme"), "rogue", codes.PermissionDenied},
		{"edge worker in another partition", edge(t, w, "acme", "edge", "default", "acme"), "edge", codes.PermissionDenied},
		{"edge worker claiming the platform sync", edge(t, w, "acme", "platform-sync-acme", "default", "acme"), "platform-sync-acme", codes.PermissionDenied},
		{"tenant not onboarded", svid(t, w, "sync/initech/default/platform-sync-initech"), "platform-sync-initech", codes.PermissionDenied},
		{"platform slug in a tenant certificate", edge(t, w, "acme", "platform-sync", "default", "platform"), "platform-sync", codes.Unavailable},
		{"acme CN issued by globex's CA", edge(t, w, "globex", "edge", "hq", "acme"), "edge", codes.Unavailable},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			c := w.client(t, tc.cert)
			hello, herr := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: tc.agentID})
			cfg, cerr := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: tc.agentID})
			for _, err := range []error{herr, cerr} {
				if status.Code(err) != tc.code {
					t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
				}
				assertNoLeak(t, w, err.Error())
			}
			if hello != nil || cfg != nil {
				t.Fatalf("refused call answered: %+v %+v", hello, cfg)
			}
		})
	}
	t.Run("an agent identity gets agent config, never a sync bundle", func(t *testing.T) {
		c := w.client(t, svid(t, w, "agent/acme/default/platform-sync-acme"))
		cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme"})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(cfg.ConfigJson, &got); err != nil {
			t.Fatal(err)
		}
		if got["scope"] != "agent" || got["tenant_slug"] != "acme" || got["sources"] != nil || strings.Contains(string(cfg.ConfigJson), "secret") {
			t.Fatalf("agent config %s", cfg.ConfigJson)
		}
		if len(cfg.GetSweep().GetDeviceTargets()) != 0 {
			t.Fatalf("sweep targets without devices: %v", cfg.GetSweep())
		}
		again, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme", ConfigVersion: cfg.ConfigVersion})
		if err != nil || !again.NotModified {
			t.Fatalf("agent poll with the current version: %+v %v", again, err)
		}
	})
	t.Run("the other tenant's fields are refused on every RPC", func(t *testing.T) { checkIsolation(t, w) })
	t.Run("config changes are pushed on the control stream", func(t *testing.T) {
		// Counted before the stream opens: its first push may come at once.
		pushes := testutil.ToFloat64(w.metrics.ConfigPushes)
		current := testutil.ToFloat64(w.metrics.ConfigAcks.WithLabelValues(server.AckCurrent))
		stale := testutil.ToFloat64(w.metrics.ConfigAcks.WithLabelValues(server.AckStale))
		cctx, stop := context.WithCancel(ctx)
		defer stop()
		c := w.client(t, svid(t, w, "sync/acme/default/platform-sync-acme"))
		stream, err := c.ControlStream(cctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "platform-sync-acme"}}}); err != nil {
			t.Fatal(err)
		}
		msgs := make(chan *pb.ControlStreamResponse, 8)
		go func() {
			for {
				m, err := stream.Recv()
				if err != nil {
					close(msgs)
					return
				}
				msgs <- m
			}
		}()
		next := func(within time.Duration) *pb.AgentConfigResponse {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatal("stream closed")
				}
				return m.GetConfig()
			case <-time.After(within):
				return nil
			}
		}
		initial := next(10 * time.Second)
		if initial == nil || len(initial.ConfigJson) == 0 {
			t.Fatal("no initial config on the stream")
		}
		if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: initial.ConfigVersion}}}); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, "the push and its ack are counted", 30*time.Second, func() bool {
			return testutil.ToFloat64(w.metrics.ConfigPushes) >= pushes+1 &&
				testutil.ToFloat64(w.metrics.ConfigAcks.WithLabelValues(server.AckCurrent)) == current+1 &&
				testutil.ToFloat64(w.metrics.ControlStreams) >= 1
		})
		// An ack of another version than the one last pushed is stale.
		if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: "not-the-pushed-version"}}}); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, "a stale ack is counted as stale", 30*time.Second, func() bool {
			return testutil.ToFloat64(w.metrics.ConfigAcks.WithLabelValues(server.AckStale)) == stale+1 &&
				testutil.ToFloat64(w.metrics.ConfigAcks.WithLabelValues(server.AckCurrent)) == current+1
		})
		// Another tenant's edit pushes nothing to acme.
		patch := func(ns, name, endpoint string) {
			src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"endpoint":"`+endpoint+`"}}`))); err != nil {
				t.Fatal(err)
			}
		}
		patch(w.ns["globex"], "globex-armis", "https://globex-armis.example/v2")
		if got := next(2 * time.Second); got != nil {
			t.Fatalf("globex's edit pushed a config to acme: %s", got.ConfigJson)
		}
		begin := time.Now()
		patch(w.ns["acme"], "acme-armis", "https://acme-armis-2.example")
		pushed := next(10 * time.Second)
		if pushed == nil || !strings.Contains(string(pushed.ConfigJson), "acme-armis-2.example") || pushed.ConfigVersion == initial.ConfigVersion {
			t.Fatalf("edit not pushed: %+v", pushed)
		}
		t.Logf("config pushed %s after the edit", time.Since(begin).Round(time.Millisecond))
		assertNoLeak(t, w, string(pushed.ConfigJson))
		// The pushed version is what GetConfig polling serves too.
		polled, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme", ConfigVersion: pushed.ConfigVersion})
		if err != nil || !polled.NotModified {
			t.Fatalf("poll after push: %+v %v", polled, err)
		}
		ack := func(cfg *pb.AgentConfigResponse) {
			if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: cfg.ConfigVersion}}}); err != nil {
				t.Fatal(err)
			}
		}
		ack(pushed)

		// A status write (heartbeats, run results) changes no bundle and pushes nothing.
		src := &v1alpha1.IntegrationSource{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["acme"], Name: "acme-armis"}, src); err != nil {
			t.Fatal(err)
		}
		src.Status.AssignedWorker = "status-only-change"
		if err := env.Client.Status().Update(ctx, src); err != nil {
			t.Fatal(err)
		}
		if got := next(2 * time.Second); got != nil {
			t.Fatalf("a status write pushed a config: %s", got.ConfigJson)
		}

		// A rotated credential in a referenced Secret is pushed.
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns["acme"], Name: "armis"}}
		if err := env.Client.Patch(ctx, sec, client.RawPatch(types.MergePatchType, []byte(`{"stringData":{"secret_key":"acme-rotated-secret"}}`))); err != nil {
			t.Fatal(err)
		}
		rotated := next(10 * time.Second)
		if rotated == nil || !strings.Contains(string(rotated.ConfigJson), "acme-rotated-secret") {
			t.Fatalf("secret rotation not pushed: %+v", rotated)
		}
		ack(rotated)

		// Pausing the SyncService is pushed as paused sources.
		ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns["platform"], Name: "platform-sync"}}
		if err := env.Client.Patch(ctx, ss, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":true}}`))); err != nil {
			t.Fatal(err)
		}
		paused := next(10 * time.Second)
		if paused == nil || !strings.Contains(string(paused.ConfigJson), `"paused":true`) {
			t.Fatalf("pause not pushed: %+v", paused)
		}
		if err := env.Client.Patch(ctx, ss, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":false}}`))); err != nil {
			t.Fatal(err)
		}
		if resumed := next(10 * time.Second); resumed == nil || resumed.ConfigVersion != rotated.ConfigVersion {
			t.Fatalf("resume not pushed as the config before the pause: %+v", resumed)
		}
		assertNoLeak(t, w, string(rotated.ConfigJson))
		// The counter moves just after the message is sent, so the last push may
		// be read before it is counted: wait for five, then check it is not more.
		test.Eventually(t, "five pushes counted", 10*time.Second, func() bool {
			return testutil.ToFloat64(w.metrics.ConfigPushes) >= pushes+5
		})
		if got := testutil.ToFloat64(w.metrics.ConfigPushes); got != pushes+5 {
			t.Fatalf("%v pushes counted, want %v", got, pushes+5)
		}
		stop()
		test.Eventually(t, "the closed stream leaves the gauge", 30*time.Second, func() bool { return testutil.ToFloat64(w.metrics.ControlStreams) == 0 })
	})

	t.Run("heartbeats are recorded with bounded writes", func(t *testing.T) {
		c := w.client(t, svid(t, w, "sync/acme/default/platform-sync-acme"))
		key := client.ObjectKey{Namespace: w.ns["platform"], Name: "platform-sync"}
		get := func() *v1alpha1.SyncService {
			ss := &v1alpha1.SyncService{}
			if err := env.Client.Get(ctx, key, ss); err != nil {
				t.Fatal(err)
			}
			return ss
		}
		if _, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "platform-sync-acme", Version: "1.4.0", Capabilities: []string{"faker", "armis"}}); err != nil {
			t.Fatal(err)
		}
		first := get()
		if first.Status.LastHeartbeatAt == nil || first.Status.Version != "1.4.0" || strings.Join(first.Status.Capabilities, ",") != "armis,faker" {
			t.Fatalf("status after Hello %+v", first.Status)
		}
		managed := ""
		for _, mf := range first.ManagedFields {
			if mf.Subresource == "status" {
				managed += mf.Manager + " "
			}
		}
		if !strings.Contains(managed, server.FieldOwner) {
			t.Fatalf("status fields are not owned by %s: %s", server.FieldOwner, managed)
		}
		steady := []struct {
			advance time.Duration
			write   bool
		}{{5 * time.Second, false}, {10 * time.Second, false}, {20 * time.Second, true}, {time.Second, false}}
		rv := first.ResourceVersion
		for i, st := range steady {
			w.clock.Step(st.advance)
			if _, err := c.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "platform-sync-acme", TenantSlug: "acme"}); err != nil {
				t.Fatal(err)
			}
			now := get()
			if (now.ResourceVersion != rv) != st.write {
				t.Fatalf("heartbeat %d (+%s): written=%v, want %v", i, st.advance, now.ResourceVersion != rv, st.write)
			}
			rv = now.ResourceVersion
			if now.Status.Version != "1.4.0" {
				t.Fatalf("a PushStatus lost the reported version: %+v", now.Status)
			}
		}
		// A change (new version) is written at once.
		if _, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "platform-sync-acme", Version: "1.5.0", Capabilities: []string{"armis", "faker"}}); err != nil {
			t.Fatal(err)
		}
		if got := get(); got.Status.Version != "1.5.0" {
			t.Fatalf("version change not written: %+v", got.Status)
		}
		for _, req := range []*pb.GatewayStatusRequest{
			{AgentId: "platform-sync-acme", TenantSlug: "globex"},
			{AgentId: "platform-sync-acme", TenantId: w.tenantID["globex"]},
			{AgentId: "platform-sync-acme", Services: []*pb.GatewayServiceStatus{{ServiceName: "sync", TenantSlug: "globex"}}},
		} {
			if _, err := c.PushStatus(ctx, req); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("contradicting tenant fields %v: %v", req, err)
			}
		}

		// A second replica, which has never seen this SyncService, reads the
		// first one's write from the cache: a steady heartbeat within the
		// interval writes nothing there either.
		other := w.clientOf(t, w.replica, svid(t, w, "sync/acme/default/platform-sync-acme"))
		push := func(c pb.AgentGatewayServiceClient) {
			t.Helper()
			if _, err := c.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "platform-sync-acme"}); err != nil {
				t.Fatal(err)
			}
		}
		writes := testutil.ToFloat64(w.replicaMetrics.HeartbeatWrites)
		for _, st := range []struct {
			name    string
			c       pb.AgentGatewayServiceClient
			advance time.Duration
			write   bool
		}{
			{"second replica within the interval", other, 10 * time.Second, false},
			{"first replica within the interval", c, 5 * time.Second, false},
			{"second replica after the interval", other, 20 * time.Second, true},
			{"first replica, its own memory due, the second's write in the cache", c, time.Second, false},
			{"second replica right after its write", other, time.Second, false},
		} {
			rv = cachedSyncService(t, w, key).ResourceVersion
			w.clock.Step(st.advance)
			push(st.c)
			now := get()
			if (now.ResourceVersion != rv) != st.write {
				t.Fatalf("%s: written=%v, want %v", st.name, now.ResourceVersion != rv, st.write)
			}
			if now.Status.Version != "1.5.0" || strings.Join(now.Status.Capabilities, ",") != "armis,faker" {
				t.Fatalf("%s: a steady heartbeat lost the reported version or capabilities: %+v", st.name, now.Status)
			}
		}
		if got := testutil.ToFloat64(w.replicaMetrics.HeartbeatWrites); got != writes+1 {
			t.Fatalf("second replica counted %v heartbeat writes, want %v", got, writes+1)
		}
	})

	t.Run("heartbeats leave the manager's status fields alone", func(t *testing.T) {
		// The manager applies phase and conditions under its own field
		// manager (controllers.FieldOwner), as controllers/status.go does.
		const manager = "sync-operator-manager"
		key := client.ObjectKey{Namespace: w.ns["acme"], Name: "edge"}
		u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"phase": string(v1alpha1.PhaseOnline),
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Onboarded", "message": "set by the manager",
				"lastTransitionTime": "2026-01-02T03:04:05Z"}},
		}}}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("SyncService"))
		u.SetName(key.Name)
		u.SetNamespace(key.Namespace)
		if err := env.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(manager), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
		c := w.client(t, edge(t, w, "acme", "edge", "hq", "acme"))
		if _, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "edge", Version: "2.0.0", Capabilities: []string{"netbox"}}); err != nil {
			t.Fatal(err)
		}
		w.clock.Step(time.Minute)
		if _, err := c.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "edge", TenantSlug: "acme"}); err != nil {
			t.Fatal(err)
		}
		ss := &v1alpha1.SyncService{}
		if err := env.Client.Get(ctx, key, ss); err != nil {
			t.Fatal(err)
		}
		ready := apimeta.FindStatusCondition(ss.Status.Conditions, "Ready")
		if ss.Status.Phase != v1alpha1.PhaseOnline || len(ss.Status.Conditions) != 1 || ready == nil || ready.Message != "set by the manager" ||
			ss.Status.Version != "2.0.0" || ss.Status.LastHeartbeatAt == nil || !ss.Status.LastHeartbeatAt.Time.Equal(w.clock.Now().Truncate(time.Second)) {
			t.Fatalf("status after heartbeats: %+v", ss.Status)
		}
		owned := map[string][]string{}
		for _, mf := range ss.ManagedFields {
			if mf.Subresource != "status" || mf.FieldsV1 == nil {
				continue
			}
			var fields map[string]map[string]any
			if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields); err != nil {
				t.Fatal(err)
			}
			for top, sub := range fields {
				if top != "f:status" {
					owned[mf.Manager] = append(owned[mf.Manager], top)
				}
				for f := range sub {
					owned[mf.Manager] = append(owned[mf.Manager], f)
				}
			}
		}
		for m := range owned {
			slices.Sort(owned[m])
		}
		if got := strings.Join(owned[server.FieldOwner], ","); got != "f:capabilities,f:lastHeartbeatAt,f:version" {
			t.Fatalf("the gateway owns %s of the status", got)
		}
		if got := strings.Join(owned[manager], ","); got != "f:conditions,f:phase" {
			t.Fatalf("the manager owns %s of the status after heartbeats", got)
		}
	})

	t.Run("StreamStatus enforces the stream rules and ingests segments once", func(t *testing.T) { checkStreamStatus(t, w) })
	t.Run("StreamStatus refuses unstorable devices one by one and unstorable segments for good", func(t *testing.T) { checkUnstorable(t, w) })
	t.Run("StreamStatus authorizes before it reads and holds no more than the limits allow", func(t *testing.T) { checkAdmission(t, w) })
	t.Run("StreamStatus reads within a deadline, applies within its own, and admits a worker's largest segment", func(t *testing.T) { checkSegmentBounds(t, w) })
	t.Run("an expired certificate ends its streams and is refused on its open connection", func(t *testing.T) { checkExpiry(t, w) })
	t.Run("logs carry a bounded part of what clients send", func(t *testing.T) { checkLogCap(t, w) })
	t.Run("StreamStatus takes upstream's array form: attributed, split per source, run to completion, in windows", func(t *testing.T) { checkUpstream(t, w) })
	t.Run("agents push status and stream sweep results that set their devices' availability", func(t *testing.T) { checkAgents(t, w) })
	t.Run("agents get the sweep in field 10 and in config_json's upstream group form", func(t *testing.T) { checkAgentSweep(t, w) })
	t.Run("commands reach a connected worker on its control stream and come back answered", func(t *testing.T) { checkCommands(t, w) })
	t.Run("an agent's control stream serves its own configuration", func(t *testing.T) { checkAgentControlStream(t, w) })
	// Last: it makes the store forget acme.
	t.Run("a segment of a deleted tenant is a failed precondition", func(t *testing.T) { checkTenantGone(t, w) })

	assertNoLeak(t, w, w.logs.String())
	if !strings.Contains(w.logs.String(), "component not enrolled") || !strings.Contains(w.logs.String(), "config acknowledged") {
		t.Fatalf("refusals or debug lines are not logged:\n%s", w.logs.String())
	}
}

// cachedSyncService waits until the informer cache has the SyncService as
// the API server has it now, and returns it.
func cachedSyncService(t *testing.T, w *world, key client.ObjectKey) *v1alpha1.SyncService {
	t.Helper()
	want := &v1alpha1.SyncService{}
	if err := env.Client.Get(context.Background(), key, want); err != nil {
		t.Fatal(err)
	}
	got := &v1alpha1.SyncService{}
	test.Eventually(t, "the cache has the SyncService's last write", 30*time.Second, func() bool {
		return w.informers.Get(context.Background(), key, got) == nil && got.ResourceVersion == want.ResourceVersion
	})
	return got
}

func assertNoLeak(t *testing.T, w *world, text string) {
	t.Helper()
	for _, f := range w.forbidden {
		if strings.Contains(text, f) {
			t.Fatalf("globex's %q leaked into: %s", f, text)
		}
	}
}

func keys(m map[string]bundle.Source) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
