package app_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// TestShippedRBACServesAndPushesCredentials runs the gateway process as its
// ServiceAccount with nothing but its shipped ClusterRole (no Secret access)
// and the Roles that the manager, with its own shipped RBAC, grants it: a
// worker still gets its source's credentials, and their rotation is pushed
// on its control stream.
func TestShippedRBACServesAndPushesCredentials(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	const operatorNS = "serviceradar-system"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		t.Fatal(err)
	}
	managerUser, err := env.UserWithRoles(ctx, "system:serviceaccount:"+operatorNS+":sync-operator-manager", "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gatewayUser, err := env.UserWithRoles(ctx, "system:serviceaccount:"+operatorNS+":sync-gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}

	skip := true
	mgr, err := ctrl.NewManager(managerUser.Config(), ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: ctrlconfig.Controller{SkipNameValidation: &skip}, Logger: testr.New(t).WithName("manager")})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	if err := controllers.Setup(mctx, mgr, controllers.Options{Namespace: operatorNS, PlatformSlug: identity.DefaultPlatformSlug,
		PlatformSync: true, GatewayServiceAccount: "sync-gateway"}); err != nil {
		t.Fatal(err)
	}
	mdone := make(chan error, 1)
	go func() { mdone <- mgr.Start(mctx) }()
	defer func() {
		mcancel()
		if err := <-mdone; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	if err := env.Client.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := env.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "armis"}, StringData: map[string]string{"secret_key": "first-key"}}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "armis"}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"},
		Queries:        []v1alpha1.Query{{Label: "all", Query: "in:devices"}},
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}}}
	for _, o := range []client.Object{sec, src} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ss := &v1alpha1.SyncService{}
	test.Eventually(t, "the platform SyncService", time.Minute, func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: controllers.PlatformSyncName}, ss) == nil
	})
	// The worker's tenant is served once the manager recorded its ID.
	test.Eventually(t, "tenant acme onboarded", time.Minute, func() bool {
		tn := &v1alpha1.Tenant{}
		return env.Client.Get(ctx, client.ObjectKey{Name: "acme"}, tn) == nil && tn.Status.TenantID != ""
	})
	worker := v1alpha1.ComponentID(ss, "acme")

	root, err := ca.NewRoot("root", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwCert, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files := pkitest.Write(t, filepath.Join(t.TempDir(), "gw"), gwCert, root.Cert)
	gctx, gcancel := context.WithCancel(ctx)
	gdone, ready := make(chan error, 1), make(chan string, 1)
	go func() {
		gdone <- app.Run(gctx, app.Config{Kube: gatewayUser.Config(), Listen: "127.0.0.1:0", CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA,
			GatewayID: "gw", Log: testr.New(t).WithName("gateway"), Ready: func(addr string) { ready <- addr }})
	}()
	defer func() {
		gcancel()
		if err := <-gdone; err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-gdone:
		t.Fatalf("the gateway stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the gateway did not start")
	}

	workerCert, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/"+worker), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	classifier, _ := identity.NewClassifier("", "")
	source := pkitest.Source(t, filepath.Join(t.TempDir(), "worker"), workerCert, root.Cert)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: source}, mtls.ServerExpectation{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := pb.NewAgentGatewayServiceClient(conn).ControlStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: worker}}}); err != nil {
		t.Fatal(err)
	}
	configs := make(chan *pb.AgentConfigResponse, 16)
	go func() {
		defer close(configs)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if cfg := m.GetConfig(); cfg != nil {
				configs <- cfg
			}
		}
	}()
	// awaitKey reads pushed configurations, acknowledging each, until the
	// source carries key.
	awaitKey := func(key string) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			var cfg *pb.AgentConfigResponse
			select {
			case c, ok := <-configs:
				if !ok {
					t.Fatal("the control stream ended")
				}
				cfg = c
			case <-deadline:
				t.Fatalf("no configuration with the credentials %q", key)
			}
			if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: cfg.ConfigVersion}}}); err != nil {
				t.Fatal(err)
			}
			var b struct {
				Sources map[string]struct {
					Credentials map[string]string `json:"credentials"`
				} `json:"sources"`
			}
			if err := json.Unmarshal(cfg.ConfigJson, &b); err != nil {
				t.Fatal(err)
			}
			if b.Sources[ns+"/armis"].Credentials["secret_key"] == key {
				return
			}
		}
	}
	awaitKey("first-key")

	sec.StringData = map[string]string{"secret_key": "rotated-key"}
	if err := env.Client.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	awaitKey("rotated-key")
}
