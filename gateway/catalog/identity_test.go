package catalog

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test"
)

// The attacks of issue 14 on the gateway's lookup of a caller, on a real API
// server: a tenant's SaaS SyncService named like the platform one, a second
// Tenant claiming a slug, and the edge certificates of a deleted tenant
// after a Tenant with its slug is created again.
func TestIdentitiesAreNeverAmbiguousOrStale(t *testing.T) {
	ctx := context.Background()
	e := startCatalogEnv(t)
	kube := e.env.Client
	c := New(kube, kubernetes.NewForConfigOrDie(e.env.Config).CoreV1(), "platform")
	sync := func(id identity.Identity) (*Entry, error) {
		t.Helper()
		c.Invalidate(id.TenantSlug)
		return c.Sync(ctx, id)
	}
	sourceRef := func(name string, ref v1alpha1.SyncServiceReference) *v1alpha1.IntegrationSource {
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: name},
			Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Partition: "default", SyncServiceRef: ref}}
	}
	own := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "platform-sync"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Partition: "default"}}
	edgeSS := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "edge"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "default"}}
	for _, o := range []client.Object{own, edgeSS,
		sourceRef("via-platform", v1alpha1.SyncServiceReference{Namespace: e.platformNS, Name: "platform-sync"}),
		sourceRef("via-own", v1alpha1.SyncServiceReference{Name: "platform-sync"}),
		sourceRef("via-edge", v1alpha1.SyncServiceReference{Name: "edge"}),
	} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svid := func(component string) identity.Identity {
		id := spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/" + component)
		return identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme",
			Partition: "default", ComponentID: component, SPIFFEID: id}
	}
	served := func(id identity.Identity, ns, source string) {
		t.Helper()
		entry, err := sync(id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if entry.SyncService.Namespace != ns || len(entry.Bundle.Sources) != 1 || entry.Bundle.Sources[e.acme+"/"+source].Type == "" {
			t.Fatalf("%s is served as %s/%s with %v", id, entry.SyncService.Namespace, entry.SyncService.Name, entry.Bundle.Sources)
		}
	}

	t.Run("a tenant's SaaS SyncService named like the platform one gets its own identity", func(t *testing.T) {
		ownID := v1alpha1.ComponentID(own, "acme")
		if ownID == e.id.ComponentID {
			t.Fatalf("acme's SyncService has the platform worker's component id %q", ownID)
		}
		for range 5 { // map order once decided which one answered
			served(e.id, e.platformNS, "via-platform")
			served(svid(ownID), e.acme, "via-own")
		}
	})

	t.Run("a slug claimed by two Tenants is served to neither", func(t *testing.T) {
		twin := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme-twin"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
		if err := kube.Create(ctx, twin); err != nil {
			t.Fatal(err)
		}
		twin.Status.TenantID = "6f0e8b52-1e0c-5f6b-9a38-0d5d2b6c1a77"
		if err := kube.Status().Update(ctx, twin); err != nil {
			t.Fatal(err)
		}
		if _, err := sync(e.id); !errors.Is(err, ErrTenantNotOnboarded) {
			t.Fatalf("served while two Tenants claim acme: %v", err)
		}
		if err := kube.Delete(ctx, twin); err != nil {
			t.Fatal(err)
		}
		served(e.id, e.platformNS, "via-platform")
	})

	t.Run("a deleted tenant's edge certificates are refused after it is created again", func(t *testing.T) {
		root, err := ca.NewRoot("root", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		classifier, _ := identity.NewClassifier("", "")
		edgeOf := func(tca *ca.Authority) identity.Identity {
			t.Helper()
			issued, err := tca.IssueEdgeClient("edge", "default", "acme", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			id, err := classifier.Classify(append([]*x509.Certificate{issued.Cert}, issued.Chain...))
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		setCA := func(tn *v1alpha1.Tenant, tca *ca.Authority) {
			t.Helper()
			tn.Status.TenantID = "11111111-1111-5111-8111-111111111111"
			tn.Status.CAFingerprint = identity.KeyFingerprint(tca.Cert)
			if err := kube.Status().Update(ctx, tn); err != nil {
				t.Fatal(err)
			}
		}
		oldCA, err := root.NewTenantCA("acme", 0)
		if err != nil {
			t.Fatal(err)
		}
		acme := &v1alpha1.Tenant{}
		if err := kube.Get(ctx, client.ObjectKey{Name: "acme"}, acme); err != nil {
			t.Fatal(err)
		}
		setCA(acme, oldCA)
		oldEdge := edgeOf(oldCA)
		served(oldEdge, e.acme, "via-edge")

		if err := kube.Delete(ctx, acme); err != nil {
			t.Fatal(err)
		}
		if _, err := sync(oldEdge); !errors.Is(err, ErrTenantNotOnboarded) {
			t.Fatalf("served while the tenant is deleted: %v", err)
		}
		newCA, err := root.NewTenantCA("acme", 0)
		if err != nil {
			t.Fatal(err)
		}
		again := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
		if err := kube.Create(ctx, again); err != nil {
			t.Fatal(err)
		}
		setCA(again, newCA)
		if _, err := sync(oldEdge); !errors.Is(err, ErrUntrustedIssuer) || !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("the old tenant's edge certificate: %v, want ErrUntrustedIssuer", err)
		}
		served(edgeOf(newCA), e.acme, "via-edge")
	})
}

// A Tenant's CA replaced on the same Tenant object (its CA Secret deleted by
// hand after a compromise, or replaced as another Tenant's): a status write
// only, no spec change. The catalog, fed by its informers alone (no explicit
// invalidation), refuses the old CA's edge certificate at once, and a
// tenant id cleared refuses the tenant.
func TestReplacedTenantCAIsEnforcedOnStatusChange(t *testing.T) {
	ctx := t.Context()
	e, c := watchingCatalog(t)
	kube := e.env.Client
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "edge"},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "default"}},
		&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "via-edge"},
			Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Partition: "default", SyncServiceRef: v1alpha1.SyncServiceReference{Name: "edge"}}},
	} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	root, err := ca.NewRoot("root", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	classifier, _ := identity.NewClassifier("", "")
	edgeOf := func(tca *ca.Authority) identity.Identity {
		t.Helper()
		issued, err := tca.IssueEdgeClient("edge", "default", "acme", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := classifier.Classify(append([]*x509.Certificate{issued.Cert}, issued.Chain...))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	oldCA, _ := root.NewTenantCA("acme", 0)
	newCA, _ := root.NewTenantCA("acme", 0)
	oldEdge, newEdge := edgeOf(oldCA), edgeOf(newCA)
	acme := &v1alpha1.Tenant{}
	setStatus := func(tenantID string, tca *ca.Authority) {
		t.Helper()
		if err := kube.Get(ctx, client.ObjectKey{Name: "acme"}, acme); err != nil {
			t.Fatal(err)
		}
		acme.Status.TenantID = tenantID
		acme.Status.CAFingerprint = identity.KeyFingerprint(tca.Cert)
		if err := kube.Status().Update(ctx, acme); err != nil {
			t.Fatal(err)
		}
	}
	const tenantID = "11111111-1111-5111-8111-111111111111"
	setStatus(tenantID, oldCA)
	test.Eventually(t, "the old CA's edge certificate served", 30*time.Second, func() bool {
		entry, err := c.Sync(ctx, oldEdge)
		return err == nil && len(entry.Bundle.Sources) == 1
	})

	// The attack: the old CA's certificate keeps calling after the CA is
	// replaced. It must be refused as soon as the informer sees the write.
	setStatus(tenantID, newCA)
	test.Eventually(t, "the replaced CA's edge certificate refused", 30*time.Second, func() bool {
		_, err := c.Sync(ctx, oldEdge)
		return errors.Is(err, ErrUntrustedIssuer)
	})
	if _, err := c.Sync(ctx, newEdge); err != nil {
		t.Fatalf("the new CA's edge certificate: %v", err)
	}

	setStatus("", newCA)
	test.Eventually(t, "the tenant refused once its tenant id is cleared", 30*time.Second, func() bool {
		_, err := c.Sync(ctx, newEdge)
		return errors.Is(err, ErrTenantNotOnboarded)
	})
}

// A Tenant stored before the slug limit, still carrying a tenant id and a
// CA (set by an older manager): its names could be another tenant's, so the
// catalog serves it nothing, as the manager and the store refuse it.
func TestLegacyLongSlugIsNotServed(t *testing.T) {
	ctx := context.Background()
	e := startCatalogEnv(t)
	kube := e.env.Client
	slug := strings.Repeat("l", v1alpha1.MaxSlugLength+4)
	legacy := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Spec: v1alpha1.TenantSpec{Slug: slug}}
	if err := e.env.CreateLegacyTenant(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	legacy.Status.TenantID = "22222222-2222-5222-8222-222222222222"
	if err := kube.Status().Update(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := e.env.TenantNamespace(ctx, "legacy", slug); err != nil {
		t.Fatal(err)
	}
	c := New(kube, kubernetes.NewForConfigOrDie(e.env.Config).CoreV1(), "platform")
	component := "platform-sync-" + slug
	id := identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: slug, Partition: "default",
		ComponentID: component, SPIFFEID: spiffeid.RequireFromString("spiffe://serviceradar.local/sync/" + slug + "/default/" + component)}
	if entry, err := c.Sync(ctx, id); !errors.Is(err, ErrTenantNotOnboarded) {
		t.Fatalf("a legacy slug is served (%v): %+v", err, entry)
	}
	if _, _, err := c.Agent(ctx, id); !errors.Is(err, ErrTenantNotOnboarded) {
		t.Fatalf("a legacy slug gets sweep targets: %v", err)
	}
}

// An OnPrem SyncService's edge identity issued afresh (its onboarding
// Secret deleted: the manager sets status.edgeIdentitySince to the new
// certificate's NotBefore) revokes every certificate issued before it, as
// soon as the informer sees the status write; a renewal, which keeps the
// start, does not.
func TestReissuedEdgeIdentityRevokesEarlierCertificates(t *testing.T) {
	ctx := t.Context()
	e, c := watchingCatalog(t)
	kube := e.env.Client
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "edge"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "default"}}
	for _, o := range []client.Object{ss,
		&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "via-edge"},
			Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Partition: "default", SyncServiceRef: v1alpha1.SyncServiceReference{Name: "edge"}}},
	} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := ca.NewRoot("root", 0, nil)
	tca, _ := root.NewTenantCA("acme", 0)
	acme := &v1alpha1.Tenant{}
	if err := kube.Get(ctx, client.ObjectKey{Name: "acme"}, acme); err != nil {
		t.Fatal(err)
	}
	acme.Status.TenantID, acme.Status.CAFingerprint = "11111111-1111-5111-8111-111111111111", identity.KeyFingerprint(tca.Cert)
	if err := kube.Status().Update(ctx, acme); err != nil {
		t.Fatal(err)
	}
	classifier, _ := identity.NewClassifier("", "")
	start := time.Now()
	// issuedAt issues the edge certificate of an hour after start.
	issuedAt := func(hour int) (identity.Identity, time.Time) {
		t.Helper()
		tca.Now = func() time.Time { return start.Add(time.Duration(hour) * time.Hour) }
		issued, err := tca.IssueEdgeClient("edge", "default", "acme", 100*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := classifier.Classify(append([]*x509.Certificate{issued.Cert}, issued.Chain...))
		if err != nil {
			t.Fatal(err)
		}
		return id, issued.Cert.NotBefore
	}
	first, firstStart := issuedAt(0)
	renewed, _ := issuedAt(1)
	fresh, freshStart := issuedAt(2)
	setSince := func(since time.Time) {
		t.Helper()
		if err := kube.Get(ctx, client.ObjectKeyFromObject(ss), ss); err != nil {
			t.Fatal(err)
		}
		ss.Status.EdgeIdentitySince = &metav1.Time{Time: since}
		if err := kube.Status().Update(ctx, ss); err != nil {
			t.Fatal(err)
		}
	}
	serves := func(id identity.Identity) error {
		_, err := c.Sync(ctx, id)
		return err
	}

	setSince(firstStart)
	test.Eventually(t, "the first and the renewed certificate served", 30*time.Second, func() bool {
		return serves(first) == nil && serves(renewed) == nil && serves(fresh) == nil
	})
	// The attack: the bundle leaked, the operator deleted its Secret, and
	// the leaked certificates keep calling.
	setSince(freshStart)
	test.Eventually(t, "the certificates from before the fresh identity refused", 30*time.Second, func() bool {
		return errors.Is(serves(first), ErrRevoked) && errors.Is(serves(renewed), ErrRevoked)
	})
	if err := serves(fresh); err != nil {
		t.Fatalf("the fresh identity's certificate: %v", err)
	}
}

// watchingCatalog starts a test API server with tenant acme and a catalog
// that follows it through informers until the test ends.
func watchingCatalog(t *testing.T) (*catalogEnv, *Catalog) {
	t.Helper()
	e := startCatalogEnv(t)
	informers, err := ctrlcache.New(e.env.Config, CacheOptions(e.env.Scheme))
	if err != nil {
		t.Fatal(err)
	}
	c := New(informers, kubernetes.NewForConfigOrDie(e.env.Config).CoreV1(), "platform")
	if err := c.Watch(t.Context(), informers); err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(t.Context()) }()
	if !informers.WaitForCacheSync(t.Context()) {
		t.Fatal("the informer cache did not sync")
	}
	return e, c
}
