package app_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/retraction"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestDeletingARetractSourceRetractsItsDevicesOnce(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	devices, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer devices.Close()

	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
	if err := env.Client.Create(ctx, tn); err != nil {
		t.Fatal(err)
	}
	ns, err := env.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	newSource := func(name string, policy v1alpha1.DeletionPolicy) *v1alpha1.IntegrationSource {
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 10}, DeletionPolicy: policy,
			SyncServiceRef: v1alpha1.SyncServiceReference{Name: "sync"}}}
		if err := env.Client.Create(ctx, src); err != nil {
			t.Fatal(err)
		}
		return src
	}
	retract, retain := newSource("retract", v1alpha1.DeletionPolicyRetract), newSource("retain", v1alpha1.DeletionPolicyRetain)
	for _, src := range []*v1alpha1.IntegrationSource{retract, retain} {
		yes := true
		devs := []store.Device{{DeviceID: src.Name + "-1", IP: "10.0.0.1", IsAvailable: &yes}, {DeviceID: src.Name + "-2", IP: "10.0.0.2", IsAvailable: &yes}}
		if _, err := devices.ApplySegment(ctx, store.Segment{TenantID: uuid.NewString(), TenantSlug: "acme", Partition: "default", Integration: "faker",
			SourceUID: string(src.UID), SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: devs}); err != nil {
			t.Fatal(err)
		}
	}

	// Two replicas with the gateway's own RBAC.
	root, _ := ca.NewRoot("root", 0, nil)
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), time.Hour)
	files := pkitest.Write(t, filepath.Join(t.TempDir(), "gw"), gw, root.Cert)
	user, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kube := user.Config() // not safe to call from several goroutines
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	ready := make(chan string, 2)
	begin := time.Now()
	for _, name := range []string{"a", "b"} {
		go func() {
			done <- app.Run(rctx, app.Config{Kube: rest.CopyConfig(kube), Listen: "127.0.0.1:0", CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA,
				GatewayID: name, PostgresDSN: dsn, DeviceCacheEntries: store.DefaultCacheEntries, Log: testr.New(t), Ready: func(addr string) { ready <- addr }})
		}()
	}
	for range 2 {
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("a replica stopped: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("the replicas did not start")
		}
	}
	t.Logf("both replicas serving after %s", time.Since(begin).Round(time.Millisecond))
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()

	get := func(src *v1alpha1.IntegrationSource) (*v1alpha1.IntegrationSource, error) {
		out := &v1alpha1.IntegrationSource{}
		return out, env.Client.Get(ctx, client.ObjectKeyFromObject(src), out)
	}
	test.Eventually(t, "the finalizer on the Retract source", time.Minute, func() bool {
		s, err := get(retract)
		return err == nil && slices.Contains(s.Finalizers, retraction.Finalizer)
	})
	if s, _ := get(retain); slices.Contains(s.Finalizers, retraction.Finalizer) {
		t.Fatal("a Retain source got the retraction finalizer")
	}
	available := func(prefix string) int {
		var n int
		if err := devices.Pool().QueryRow(ctx, `SELECT count(*) FROM tenant_acme.ocsf_devices d JOIN tenant_acme.device_identifiers i ON i.device_uid = d.uid
WHERE d.is_available AND i.identifier_value LIKE $1`, prefix+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, src := range []*v1alpha1.IntegrationSource{retract, retain} {
		if err := env.Client.Delete(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	test.Eventually(t, "the Retract source's deletion", time.Minute, func() bool {
		_, err := get(retract)
		return apierrors.IsNotFound(err)
	})
	if got := available("retract-"); got != 0 {
		t.Fatalf("%d devices of the deleted Retract source are still available", got)
	}
	if got := available("retain-"); got != 2 {
		t.Fatalf("%d devices of the deleted Retain source are available, want 2", got)
	}
	var total int
	if err := devices.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices").Scan(&total); err != nil || total != 4 {
		t.Fatalf("retraction lost devices: %d (%v)", total, err)
	}
	// A Tenant that appears gets its schema before any device arrives.
	if err := env.Client.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "globex"}, Spec: v1alpha1.TenantSpec{Slug: "globex"}}); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "globex's schema", time.Minute, func() bool {
		var n int
		_ = devices.Pool().QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tenant_globex' AND table_name = 'ocsf_devices'").Scan(&n)
		return n == 1
	})
}
