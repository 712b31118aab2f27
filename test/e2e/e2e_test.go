// Package e2e runs the whole system in one test process against real
// things: kube-apiserver and etcd, PostgreSQL, the manager with its shipped
// RBAC, the gateway with its shipped RBAC over real mTLS, one worker per
// tenant started from the bootstrap and SVID the manager rendered, and the
// Armis and NetBox emulators. There is no kubelet: the test runs each worker
// Deployment's pod as an in-process worker and reports it ready, as a kubelet would.
package e2e_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	gwapp "github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/app"
	"github.com/serviceradar/sync-operator/workers/runner"
	"github.com/serviceradar/sync-operator/workload"
)

const operatorNS = "serviceradar-system"

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// gateway is an in-process gateway that can be restarted on its address.
type gateway struct {
	t      *testing.T
	cfg    gwapp.Config
	cancel context.CancelFunc
	done   chan error
}

func (g *gateway) start() {
	g.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	g.cancel, g.done = cancel, make(chan error, 1)
	cfg := g.cfg
	cfg.Ready = func(a string) { ready <- a }
	go func() { g.done <- gwapp.Run(ctx, cfg) }()
	select {
	case <-ready:
	case err := <-g.done:
		g.t.Fatalf("gateway: %v", err)
	case <-time.After(time.Minute):
		g.t.Fatal("gateway did not start")
	}
}

func (g *gateway) stop() {
	g.cancel()
	if err := <-g.done; err != nil {
		g.t.Errorf("gateway stopped with %v", err)
	}
}

// system is the whole system running for one test: the API server, the
// manager, the gateway, PostgreSQL and one worker per tenant. Everything
// stops at the test's cleanup.
type system struct {
	c       client.Client
	devices *store.Store
	gw      *gateway
	env     *kubetest.Env
}

// startSystem creates objs (namespaces, tenants, Secrets, sources, which
// reference emulators the caller started) and runs the manager, the gateway
// and the worker of each tenant in slugs, as the manager rendered them.
func startSystem(t *testing.T, objs []client.Object, slugs ...string) *system {
	t.Helper()
	ctx := context.Background()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		t.Fatal(err)
	}
	managerUser, err := env.UserWithRoles(ctx, "manager", "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The gateway is its ServiceAccount: the manager grants it the credentials Secrets.
	gatewayUser, err := env.UserWithRoles(ctx, "system:serviceaccount:"+operatorNS+":sync-gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDatabase(t)
	devices, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(devices.Close)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwAddr := l.Addr().String()
	_ = l.Close()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}

	// The manager, with its shipped RBAC.
	skip := true
	mgr, err := ctrl.NewManager(managerUser.Config(), ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: ctrlconfig.Controller{SkipNameValidation: &skip}, Logger: testr.New(t).WithName("manager")})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	if err := controllers.Setup(mctx, mgr, controllers.Options{Namespace: operatorNS, PlatformSlug: identity.DefaultPlatformSlug,
		PlatformSync: true, GatewayAddress: gwAddr, TrustDomain: spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain),
		GatewayServiceAccount: "sync-gateway"}); err != nil {
		t.Fatal(err)
	}
	mdone := make(chan error, 1)
	go func() { mdone <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		mcancel()
		if err := <-mdone; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	// The gateway, its SVID issued from the root CA the manager bootstrapped.
	dir := t.TempDir()
	var gwFiles pkitest.Files
	test.Eventually(t, "the platform root CA", time.Minute, func() bool {
		sec := &corev1.Secret{}
		if c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: platform.RootCASecret}, sec) != nil {
			return false
		}
		root, err := (&platform.Store{Client: c, Reader: c, Namespace: operatorNS}).RootCA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		svid, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gateway"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		gwFiles = pkitest.Write(t, filepath.Join(dir, "gateway"), svid, root.Cert)
		return true
	})
	gw := &gateway{t: t, cfg: gwapp.Config{Kube: gatewayUser.Config(), Listen: gwAddr, CertFile: gwFiles.Cert, KeyFile: gwFiles.Key,
		CAFile: gwFiles.CA, GatewayID: "gw", PostgresDSN: dsn, DeviceCacheEntries: store.DefaultCacheEntries, Log: testr.New(t).WithName("gateway")}}
	gw.start()
	t.Cleanup(func() { gw.stop() })

	// One worker per tenant, as the manager rendered them.
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan error, len(slugs))
	for _, slug := range slugs {
		name := workload.Name("sync", controllers.PlatformSyncName, slug)
		cm, sec := &corev1.ConfigMap{}, &corev1.Secret{}
		test.Eventually(t, slug+"'s rendered worker", time.Minute, func() bool {
			return c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, cm) == nil &&
				c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: workload.Name("sync", controllers.PlatformSyncName, slug, "svid")}, sec) == nil
		})
		boot, err := bootstrap.Parse([]byte(cm.Data[bootstrap.FileName]))
		if err != nil {
			t.Fatal(err)
		}
		wdir := filepath.Join(dir, slug)
		if err := os.MkdirAll(wdir, 0o700); err != nil {
			t.Fatal(err)
		}
		for key, file := range map[string]string{corev1.TLSCertKey: "tls.crt", corev1.TLSPrivateKeyKey: "tls.key", "ca.crt": "ca.crt"} {
			if err := os.WriteFile(filepath.Join(wdir, file), sec.Data[key], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		boot.Identity = bootstrap.FileIdentity(wdir)
		raw, _ := boot.JSON()
		bootFile := filepath.Join(wdir, "bootstrap.json")
		if err := os.WriteFile(bootFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		go func() {
			wdone <- app.Run(wctx, app.Config{BootstrapFile: bootFile, Version: "e2e", Log: testr.New(t).WithName("worker-" + slug),
				Runner: runner.Options{SegmentDevices: 500}})
		}()
		// The pod runs: report it as the kubelet would.
		// The manager applies the Deployment after the ConfigMap and the
		// Secret, and may re-apply it meanwhile: retry on absence and conflict.
		test.Eventually(t, slug+"'s worker Deployment reported ready", time.Minute, func() bool {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, d); err != nil {
				return false
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
			return c.Status().Update(ctx, d) == nil
		})
	}
	// Registered after the gateway's, so it runs first: workers stop
	// before the gateway they talk to.
	t.Cleanup(func() {
		wcancel()
		for range slugs {
			if err := <-wdone; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	})
	return &system{c: c, devices: devices, gw: gw, env: env}
}

// status is the status of s as the API server has it now.
func (sys *system) status(s *v1alpha1.IntegrationSource) v1alpha1.IntegrationSourceStatus {
	got := &v1alpha1.IntegrationSource{}
	if err := sys.c.Get(context.Background(), client.ObjectKeyFromObject(s), got); err != nil {
		return v1alpha1.IntegrationSourceStatus{}
	}
	return got.Status
}

// synced reports whether s's last run succeeded with n devices.
func (sys *system) synced(s *v1alpha1.IntegrationSource, n int64) func() bool {
	return func() bool {
		st := sys.status(s)
		return st.LastSyncResult == v1alpha1.SyncResultSuccess && st.DevicesDiscovered == n && st.LastSyncTime != nil
	}
}

// count counts slug's devices that match where.
func (sys *system) count(slug, where string) int {
	var n int
	_ = sys.devices.Pool().QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s.ocsf_devices WHERE %s", store.Schema(slug), where)).Scan(&n)
	return n
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	armis := armisemu.New(armisemu.Options{Seed: 5, Devices: 4000})
	armisURL := armis.Start()
	defer armis.Close()
	netbox := netboxemu.New(netboxemu.Options{Seed: 6, Devices: 1500})
	netboxURL := netbox.Start()
	defer netbox.Close()

	// Two tenants, three kinds of sources, all served by the platform SyncService.
	ref := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	hour := &metav1.Duration{Duration: time.Hour}
	src := func(ns, name string, spec v1alpha1.IntegrationSourceSpec) *v1alpha1.IntegrationSource {
		spec.SyncServiceRef, spec.PollInterval, spec.DiscoveryInterval = ref, hour, hour
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	}
	acmeFaker := src("acme", "lab", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 2000, Seed: 1}})
	acmeArmis := src("acme", "armis", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, Endpoint: armisURL,
		CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"}, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}},
		PageSize: 1000, DeletionPolicy: v1alpha1.DeletionPolicyRetract, Armis: &v1alpha1.ArmisSpec{StaleAfter: &metav1.Duration{}}})
	globexNetbox := src("globex", "netbox", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationNetBox, Endpoint: netboxURL,
		CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"}, PageSize: 500})
	globexFaker := src("globex", "lab", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 1000, Seed: 2}})
	sys := startSystem(t, []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme", Labels: map[string]string{v1alpha1.TenantLabel: "acme"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "globex", Labels: map[string]string{v1alpha1.TenantLabel: "globex"}}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "globex"}, Spec: v1alpha1.TenantSpec{Slug: "globex"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "armis"}, StringData: map[string]string{"secret_key": armisemu.DefaultSecretKey}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "globex", Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
		acmeFaker, acmeArmis, globexNetbox, globexFaker,
	}, "acme", "globex")
	c, devices, gw := sys.c, sys.devices, sys.gw
	status, synced, count := sys.status, sys.synced, sys.count
	for _, tc := range []struct {
		src *v1alpha1.IntegrationSource
		n   int64
	}{{acmeFaker, 2000}, {acmeArmis, 4000}, {globexFaker, 1000}} {
		test.Eventually(t, tc.src.Namespace+"/"+tc.src.Name+" synced", 3*time.Minute, synced(tc.src, tc.n))
	}
	// NetBox reports its devices and virtual machines less the
	// decommissioning ones: as many as its status says.
	test.Eventually(t, "globex/netbox synced", 3*time.Minute, func() bool {
		st := status(globexNetbox)
		return st.LastSyncResult == v1alpha1.SyncResultSuccess && st.DevicesDiscovered > 0
	})
	nb := int(status(globexNetbox).DevicesDiscovered)
	if a, g := count("acme", "true"), count("globex", "true"); a != 6000 || g != 1000+nb {
		t.Fatalf("devices: acme %d (want 6000), globex %d (want %d)", a, g, 1000+nb)
	}
	// Nothing crosses: each tenant's schema holds only its own sources' devices.
	if n := count("acme", "'netbox' = ANY(discovery_sources)"); n != 0 {
		t.Fatalf("%d NetBox devices of globex in acme's schema", n)
	}
	if n := count("globex", "'armis' = ANY(discovery_sources)"); n != 0 {
		t.Fatalf("%d Armis devices of acme in globex's schema", n)
	}
	test.Eventually(t, "platform-sync Online", time.Minute, func() bool {
		ss := &v1alpha1.SyncService{}
		return c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: controllers.PlatformSyncName}, ss) == nil && ss.Status.Phase == v1alpha1.PhaseOnline
	})

	// An edit is pushed and applied: the Faker source grows.
	patch := func(s *v1alpha1.IntegrationSource, p string) {
		t.Helper()
		if err := c.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	patch(acmeFaker, `{"spec":{"faker":{"devices":2500}}}`)
	test.Eventually(t, "the edited Faker source synced", 2*time.Minute, synced(acmeFaker, 2500))
	if n := count("acme", "true"); n != 6500 {
		t.Fatalf("acme has %d devices after the edit, want 6500", n)
	}

	// Deleting the Retract source marks its devices unavailable, and keeps them.
	if err := c.Delete(ctx, acmeArmis); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "the Retract source's deletion", time.Minute, func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(acmeArmis), &v1alpha1.IntegrationSource{}))
	})
	if avail, all := count("acme", "is_available"), count("acme", "true"); avail != 2500 || all != 6500 {
		t.Fatalf("after retraction: %d available of %d, want 2500 of 6500", avail, all)
	}

	// A gateway restart in the middle of a run loses nothing and doubles nothing.
	before := status(globexFaker).LastRunID
	patch(globexFaker, `{"spec":{"faker":{"devices":20000}}}`)
	test.Eventually(t, "the big run under way", time.Minute, func() bool {
		// Not an upper bound: the run may finish between two polls, and
		// everything below holds either way.
		return count("globex", "true") > nb+1000+1000
	})
	gw.stop()
	time.Sleep(time.Second)
	gw.start()
	test.Eventually(t, "the interrupted run finished", 3*time.Minute, func() bool {
		st := status(globexFaker)
		return st.LastRunID != before && st.LastSyncResult == v1alpha1.SyncResultSuccess && st.DevicesDiscovered == 20000
	})
	if n := count("globex", "true"); n != 20000+nb {
		t.Fatalf("globex has %d devices after the interrupted run, want %d", n, 20000+nb)
	}
	var dup int
	if err := devices.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT identifier_value FROM tenant_globex.device_identifiers
WHERE identifier_type = 'faker_device_id' GROUP BY identifier_value HAVING count(*) > 1) d`).Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("%d Faker ids on several devices (%v)", dup, err)
	}
}
