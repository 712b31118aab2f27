package app_test

import (
	"context"
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
	"github.com/serviceradar/sync-operator/gateway/schemas"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// A Tenant's deletionPolicy decides what happens to its schema, carried out
// by two gateway replicas running with the gateway's own RBAC: Drop drops
// it before the Tenant goes, Retain keeps it, and a younger Tenant that
// duplicated a slug (never served) leaves the older one's schema alone.
func TestTenantDeletionPolicy(t *testing.T) {
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
	schemaExists := func(slug string) bool {
		var n int
		if err := devices.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", store.Schema(slug)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	newTenant := func(name, slug string, policy v1alpha1.TenantDeletionPolicy) *v1alpha1.Tenant {
		tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TenantSpec{Slug: slug, DeletionPolicy: policy}}
		if err := env.Client.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
		return tn
	}
	drop, keep := newTenant("doomed", "doomed", v1alpha1.TenantDeletionDrop), newTenant("kept", "kept", v1alpha1.TenantDeletionRetain)
	older := newTenant("dupe-a", "dupe", v1alpha1.TenantDeletionDrop)
	time.Sleep(1100 * time.Millisecond) // creation timestamps have seconds: the duplicate is younger
	younger := newTenant("dupe-b", "dupe", v1alpha1.TenantDeletionDrop)
	for _, slug := range []string{"doomed", "kept", "dupe"} {
		yes := true
		if _, err := devices.ApplySegment(ctx, store.Segment{TenantID: uuid.NewString(), TenantSlug: slug, Partition: "default", Integration: "faker",
			SourceUID: uuid.NewString(), SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(),
			Devices: []store.Device{{DeviceID: slug + "-1", IP: "10.0.0.1", IsAvailable: &yes}}}); err != nil {
			t.Fatal(err)
		}
	}

	root, _ := ca.NewRoot("root", 0, nil)
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), time.Hour)
	files := pkitest.Write(t, filepath.Join(t.TempDir(), "gw"), gw, root.Cert)
	user, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kube := user.Config()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	ready := make(chan string, 2)
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
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()

	finalizers := func(tn *v1alpha1.Tenant) ([]string, error) {
		got := &v1alpha1.Tenant{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(tn), got)
		return got.Finalizers, err
	}
	for _, tn := range []*v1alpha1.Tenant{drop, older, younger} {
		test.Eventually(t, "the drop-schema finalizer on "+tn.Name, time.Minute, func() bool {
			f, err := finalizers(tn)
			return err == nil && slices.Contains(f, schemas.Finalizer)
		})
	}
	if f, _ := finalizers(keep); slices.Contains(f, schemas.Finalizer) {
		t.Fatal("a Retain tenant got the drop-schema finalizer")
	}
	gone := func(tn *v1alpha1.Tenant) {
		t.Helper()
		if err := env.Client.Delete(ctx, tn); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, tn.Name+" deleted", time.Minute, func() bool {
			_, err := finalizers(tn)
			return apierrors.IsNotFound(err)
		})
	}

	gone(drop)
	if schemaExists("doomed") {
		t.Fatal("the schema of a Drop tenant survived it")
	}
	gone(keep)
	if !schemaExists("kept") {
		t.Fatal("the schema of a Retain tenant was dropped")
	}
	gone(younger)
	if !schemaExists("dupe") {
		t.Fatal("deleting a duplicate Tenant dropped the schema of the Tenant it duplicated")
	}
	gone(older)
	if schemaExists("dupe") {
		t.Fatal("the schema of a Drop tenant survived it")
	}
}
