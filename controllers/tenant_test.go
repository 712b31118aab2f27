package controllers_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/gateway/schemas"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workload"
)

func gone(obj client.Object) func() error {
	return func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("still there")
	}
}

// Two non-platform Tenants with one slug: the API server cannot refuse the
// second (a CEL rule sees one object), so the manager refuses both, serves
// neither (no tenant id, no workers) until one is deleted, and deleting the
// younger duplicate leaves the older one's CA in place.
func TestDuplicateSlugIsServedToNeither(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	first := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "dupe-first"}, Spec: v1alpha1.TenantSpec{Slug: "dupe"}}
	mustCreate(t, first)
	tenantReady(t, first, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	fingerprint := first.Status.CAFingerprint
	ns := tenantNamespace(t, "dupe")
	src := faker("lab", ns, v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName})
	mustCreate(t, src)
	sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	worker := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: workload.Name("sync", controllers.PlatformSyncName, "dupe")}}
	waitFor(t, "the worker of dupe", getObj(env.Client, worker, worker.Namespace, worker.Name))

	second := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "dupe-second"}, Spec: v1alpha1.TenantSpec{Slug: "dupe"}}
	mustCreate(t, second)
	tenantReady(t, second, metav1.ConditionFalse, v1alpha1.ReasonDuplicateSlug)
	tenantReady(t, first, metav1.ConditionFalse, v1alpha1.ReasonDuplicateSlug)
	for _, tn := range []*v1alpha1.Tenant{first, second} {
		if tn.Status.TenantID != "" || tn.Status.CAFingerprint != "" {
			t.Fatalf("%s keeps tenant ID %q and CA %q while its slug is ambiguous", tn.Name, tn.Status.TenantID, tn.Status.CAFingerprint)
		}
	}
	sourceReady(t, src, metav1.ConditionFalse, v1alpha1.ReasonTenantNotFound)
	waitFor(t, "the worker of the ambiguous slug removed", gone(worker))

	if err := env.Client.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the duplicate deleted", gone(second))
	tenantReady(t, first, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	if first.Status.CAFingerprint != fingerprint {
		t.Fatal("deleting the duplicate revoked the CA of the Tenant it duplicated")
	}
	sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
}

// A deleted Tenant's CA is revoked: a Tenant created again with its slug
// keeps its tenant ID but gets a new CA (published in status for the
// gateway), and its OnPrem SyncServices get bundles issued by the new CA.
func TestDeletedTenantsCAIsRevoked(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "phoenix"}, Spec: v1alpha1.TenantSpec{Slug: "phoenix"}}
	mustCreate(t, tn)
	tenantReady(t, tn, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	before, beforeID := tn.Status.CAFingerprint, tn.Status.TenantID
	caSecret := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: platform.TenantCASecretName("phoenix")}, caSecret); err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(caSecret.Data[corev1.TLSCertKey])
	if err != nil || identity.KeyFingerprint(certs[0]) != before {
		t.Fatalf("status.caFingerprint %q is not the CA's key (%v)", before, err)
	}
	ns := tenantNamespace(t, "phoenix")
	edge := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}}
	mustCreate(t, edge)
	issuerOf := func(want string) func() error {
		return func() error {
			sec := &corev1.Secret{}
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "edge-onboarding"}, sec); err != nil {
				return err
			}
			certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
			if err != nil || len(certs) < 2 {
				return fmt.Errorf("bundle certificates: %v", err)
			}
			if got := identity.KeyFingerprint(certs[1]); got != want {
				return fmt.Errorf("edge certificate issued by %s, want %s", got, want)
			}
			if err := certs[0].CheckSignatureFrom(certs[1]); err != nil {
				return err
			}
			return nil
		}
	}
	waitFor(t, "the onboarding bundle", issuerOf(before))

	if err := env.Client.Delete(ctx, tn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "phoenix deleted", gone(tn))
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(caSecret), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the CA Secret of the deleted tenant is still there: %v", err)
	}
	again := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "phoenix"}, Spec: v1alpha1.TenantSpec{Slug: "phoenix"}}
	mustCreate(t, again)
	tenantReady(t, again, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	if again.Status.TenantID != beforeID {
		t.Fatalf("tenant ID changed from %s to %s", beforeID, again.Status.TenantID)
	}
	if again.Status.CAFingerprint == "" || again.Status.CAFingerprint == before {
		t.Fatalf("the Tenant created again has CA %q, the deleted one had %q", again.Status.CAFingerprint, before)
	}
	waitFor(t, "the onboarding bundle issued by the new CA", issuerOf(again.Status.CAFingerprint))
}

// The attack of issue 14 on the manager: a tenant's own SaaS SyncService
// named like the platform one runs a worker with another identity than the
// platform worker of that tenant.
func TestTenantSyncServiceNamedLikeThePlatformOne(t *testing.T) {
	startManager(t, ssOpts)
	mallory := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "mallory"}, Spec: v1alpha1.TenantSpec{Slug: "mallory"}}
	mustCreate(t, mallory)
	// Converged before the test ends, so that the steady-state test after
	// it finds nothing of mallory's left to write.
	defer tenantReady(t, mallory, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	ns := tenantNamespace(t, "mallory")
	own := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: controllers.PlatformSyncName, Namespace: ns},
		Spec: v1alpha1.SyncServiceSpec{Identity: v1alpha1.IdentitySpec{Provider: v1alpha1.IdentityProviderCertificate}}}
	mustCreate(t, own,
		faker("via-own", ns, v1alpha1.SyncServiceReference{Name: controllers.PlatformSyncName}),
		faker("via-platform", ns, v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}))
	spiffeID := func(ns string) string {
		cm := &corev1.ConfigMap{}
		waitFor(t, "the worker bootstrap in "+ns, getObj(env.Client, cm, ns, workload.Name("sync", controllers.PlatformSyncName, "mallory")))
		var boot bootstrap.Config
		if err := json.Unmarshal([]byte(cm.Data[bootstrap.FileName]), &boot); err != nil {
			t.Fatal(err)
		}
		return boot.Identity.SPIFFEID
	}
	platformID, ownID := spiffeID(operatorNS), spiffeID(ns)
	waitFor(t, "the SVID of mallory's platform worker", getObj(env.Client, &corev1.Secret{}, operatorNS,
		workload.Name("sync", controllers.PlatformSyncName, "mallory", "svid")))
	if platformID != "spiffe://serviceradar.local/sync/mallory/default/platform-sync-mallory" {
		t.Fatalf("platform worker identity %q", platformID)
	}
	if ownID == platformID {
		t.Fatalf("mallory's own SyncService runs as the platform worker %s", platformID)
	}
	sec := &corev1.Secret{}
	waitFor(t, "the SVID of mallory's own worker", getObj(env.Client, sec, ns, workload.Name("sync", controllers.PlatformSyncName, "mallory", "svid")))
	certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != ownID {
		t.Fatalf("SVID of mallory's worker %v, want %s", certs[0].URIs, ownID)
	}
}

// Two OnPrem SyncServices of one tenant with one name and partition would
// have one edge CN (64 characters leave no room for the namespace): neither
// gets a bundle until one is gone.
func TestDuplicateEdgeIdentityIsRefused(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "twins"}, Spec: v1alpha1.TenantSpec{Slug: "twins"}})
	nsA, nsB := tenantNamespace(t, "twins"), tenantNamespace(t, "twins")
	a := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: nsA}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}}
	b := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: nsB}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}}
	mustCreate(t, a, b)
	for _, ss := range []*v1alpha1.SyncService{a, b} {
		waitFor(t, ss.Namespace+"/edge refused", readyIs(ss, func() []metav1.Condition { return ss.Status.Conditions },
			func() int64 { return ss.Generation }, metav1.ConditionFalse, v1alpha1.ReasonDuplicateIdentity))
	}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: nsB, Name: "edge-onboarding"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a bundle was issued for an ambiguous edge identity: %v", err)
	}
	if err := env.Client.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, nsB+"/edge Ready", readyIs(b, func() []metav1.Condition { return b.Status.Conditions },
		func() int64 { return b.Generation }, metav1.ConditionTrue, v1alpha1.ReasonReconciled))
	sec := &corev1.Secret{}
	waitFor(t, "the bundle", getObj(env.Client, sec, nsB, "edge-onboarding"))
	certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: rootPool(t, env.Client), Intermediates: pool(certs[1:]),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// staleClient reads one object as a stale informer cache would: as it was
// before another component changed it.
type staleClient struct {
	client.Client
	stale client.Object
}

func (c staleClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if key == client.ObjectKeyFromObject(c.stale) {
		if t, ok := obj.(*v1alpha1.Tenant); ok {
			c.stale.(*v1alpha1.Tenant).DeepCopyInto(t)
			return nil
		}
	}
	return c.Client.Get(ctx, key, obj, opts...) //nolint:wrapcheck // a pass-through
}

// The manager's finalizer patch from a stale cache: a JSON merge patch
// replaces the whole finalizer list, so without an optimistic lock it would
// erase the finalizer the gateway added in between (and with it the Drop of
// the tenant's schema). It must be refused as a conflict instead.
func TestStaleFinalizerPatchKeepsTheGatewaysFinalizer(t *testing.T) {
	ctx := context.Background()
	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "stale"}, Spec: v1alpha1.TenantSpec{Slug: "stale", DeletionPolicy: v1alpha1.TenantDeletionDrop}}
	mustCreate(t, tn)
	stale := tn.DeepCopy()
	// The gateway adds its finalizer after the manager's cache was filled.
	tn.Finalizers = append(tn.Finalizers, schemas.Finalizer)
	if err := env.Client.Update(ctx, tn); err != nil {
		t.Fatal(err)
	}
	defer func() {
		tn.Finalizers = nil
		_ = env.Client.Update(ctx, tn)
		_ = env.Client.Delete(ctx, tn)
	}()
	r := &controllers.TenantReconciler{Client: staleClient{Client: env.Client, stale: stale}, PlatformSlug: "platform",
		Platform: &platform.Store{Client: env.Client, Reader: env.Client, Namespace: operatorNS}}
	_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tn)})
	if !apierrors.IsConflict(err) {
		t.Errorf("a finalizer patch from a stale read: %v, want a conflict", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tn), tn); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tn.Finalizers, schemas.Finalizer) {
		t.Fatalf("the gateway's finalizer was erased: %v", tn.Finalizers)
	}
}

// A Tenant stored before the slug limit, with the tenant id and CA an older
// manager gave it: it gets no finalizer (on a cluster without validation
// ratcheting the patch would be refused, and the Tenant would never be
// reported), it is InvalidSlug with no tenant id or CA left in status, and
// its sources are not served.
func TestLegacyLongSlugTenantIsRefused(t *testing.T) {
	ctx := context.Background()
	slug := strings.Repeat("l", v1alpha1.MaxSlugLength+4)
	legacy := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "legacy-long"}, Spec: v1alpha1.TenantSpec{Slug: slug}}
	if err := env.CreateLegacyTenant(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	legacy.Status.TenantID = "33333333-3333-5333-8333-333333333333"
	legacy.Status.CAFingerprint = strings.Repeat("ab", 32)
	if err := env.Client.Status().Update(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	ns := tenantNamespace(t, slug)
	src := faker("lab", ns, v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName})
	mustCreate(t, src)
	startManager(t, ssOpts)

	tenantReady(t, legacy, metav1.ConditionFalse, v1alpha1.ReasonInvalidSlug)
	if legacy.Status.TenantID != "" || legacy.Status.CAFingerprint != "" {
		t.Fatalf("an invalid slug keeps tenant id %q and CA %q", legacy.Status.TenantID, legacy.Status.CAFingerprint)
	}
	if len(legacy.Finalizers) != 0 {
		t.Fatalf("an invalid slug got finalizers %v", legacy.Finalizers)
	}
	sourceReady(t, src, metav1.ConditionFalse, v1alpha1.ReasonTenantNotFound)
	if err := env.Client.Delete(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the legacy tenant deleted", gone(legacy))
}

// Platform SyncServices have component ids without their namespace
// (<name>-<tenant>), so two with one name and partition in two namespaces of
// the platform tenant are one identity, which the gateway refuses as
// ambiguous: the manager refuses both too (no workers, Ready=False) instead
// of reporting them Ready, until one is gone.
func TestDuplicatePlatformSyncServiceIsRefused(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	first := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: controllers.PlatformSyncName}}
	waitFor(t, "the platform SyncService", getObj(env.Client, first, operatorNS, controllers.PlatformSyncName))
	tenant := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "shadowed"}, Spec: v1alpha1.TenantSpec{Slug: "shadowed"}}
	mustCreate(t, tenant)
	tenantNS := tenantNamespace(t, "shadowed")
	mustCreate(t, faker("lab", tenantNS, v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}))
	worker := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: workload.Name("sync", controllers.PlatformSyncName, "shadowed")}}
	waitFor(t, "the platform worker of shadowed", getObj(env.Client, worker, worker.Namespace, worker.Name))

	twin := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNamespace(t, "platform"), Name: controllers.PlatformSyncName},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Platform: true,
			Identity: v1alpha1.IdentitySpec{Provider: v1alpha1.IdentityProviderCertificate}}}
	mustCreate(t, twin, faker("lab-twin", tenantNS, v1alpha1.SyncServiceReference{Namespace: twin.Namespace, Name: twin.Name}))
	for _, ss := range []*v1alpha1.SyncService{first, twin} {
		waitFor(t, ss.Namespace+"/"+ss.Name+" refused", readyIs(ss, func() []metav1.Condition { return ss.Status.Conditions },
			func() int64 { return ss.Generation }, metav1.ConditionFalse, v1alpha1.ReasonDuplicateIdentity))
	}
	waitFor(t, "the worker of an ambiguous identity removed", gone(worker))
	twinWorker := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: twin.Namespace, Name: worker.Name}, twinWorker); !apierrors.IsNotFound(err) {
		t.Fatalf("the twin runs a worker with an ambiguous identity: %v", err)
	}

	if err := env.Client.Delete(ctx, twin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the twin deleted", gone(twin))
	waitFor(t, "the platform SyncService Ready again", readyIs(first, func() []metav1.Condition { return first.Status.Conditions },
		func() int64 { return first.Generation }, metav1.ConditionTrue, v1alpha1.ReasonReconciled))
	waitFor(t, "the platform worker of shadowed back", getObj(env.Client, &appsv1.Deployment{}, worker.Namespace, worker.Name))
}
