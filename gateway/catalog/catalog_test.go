package catalog

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
)

func TestUnchangedIgnoresOnlyUpdatesThatCannotChangeABundle(t *testing.T) {
	now := metav1.Now()
	src := func(gen int64, labels map[string]string, deleting bool) client.Object {
		s := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Generation: gen, Labels: labels}}
		if deleting {
			s.DeletionTimestamp = &now
		}
		return s
	}
	secret := func(rv string) client.Object {
		m := secretMeta()
		m.ResourceVersion = rv
		return m
	}
	ns := func(labels map[string]string) client.Object {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: labels, ResourceVersion: "1"}}
	}
	for _, tc := range []struct {
		name     string
		old, new client.Object
		want     bool
	}{
		{"status write", src(3, nil, false), src(3, nil, false), true},
		{"spec edit", src(3, nil, false), src(4, nil, false), false},
		{"deletion starts", src(3, nil, false), src(3, nil, true), false},
		{"label edit", src(3, nil, false), src(3, map[string]string{"a": "b"}, false), false},
		{"secret resync", secret("7"), secret("7"), true},
		{"secret data edit", secret("7"), secret("8"), false},
		{"namespace annotation", ns(map[string]string{v1alpha1.TenantLabel: "acme"}), ns(map[string]string{v1alpha1.TenantLabel: "acme"}), true},
		{"namespace moves tenant", ns(map[string]string{v1alpha1.TenantLabel: "acme"}), ns(map[string]string{v1alpha1.TenantLabel: "globex"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unchanged(tc.old, tc.new); got != tc.want {
				t.Fatalf("unchanged = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInvalidationWakesOnlyItsTenant(t *testing.T) {
	c := New(nil, nil, "platform")
	acme, globex := c.Changed("acme"), c.Changed("globex")
	c.invalidateSlug("acme")
	select {
	case <-acme:
	default:
		t.Fatal("acme's waiters were not woken")
	}
	select {
	case <-globex:
		t.Fatal("globex's waiters were woken by acme's change")
	default:
	}
	c.invalidateSlug("") // an object outside tenant namespaces
	select {
	case <-globex:
		t.Fatal("an object outside tenant namespaces woke globex")
	default:
	}
	c.invalidateSlug("platform") // shared SyncServices live there
	select {
	case <-globex:
	default:
		t.Fatal("a platform change did not wake globex")
	}
}

// referenced lists the Secrets the catalog keeps track of, with whether it holds their data.
func referenced(c *Catalog) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for key, r := range c.refs {
		out[key.String()] = r.data != nil
	}
	return out
}

func TestSecretsNoSourceReferencesAreForgotten(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		t.Fatal(err)
	}
	ns := func(name, slug string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.TenantLabel: slug}}}
	}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name}, Data: map[string][]byte{"secret_key": []byte(name + "-value")}}
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: "sr-system", Name: "platform-sync", UID: "ss-uid"},
		Spec: v1alpha1.SyncServiceSpec{Platform: true, Partition: "default"}}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "armis", UID: "src-uid"},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.example", Partition: "default",
			CredentialsSecretRef: &v1alpha1.SecretReference{Name: "one"}, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: "sr-system", Name: "platform-sync"}}}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}, Status: v1alpha1.TenantStatus{TenantID: "acme-id"}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Spec: v1alpha1.TenantSpec{Slug: "platform", Platform: true}, Status: v1alpha1.TenantStatus{TenantID: "platform-id"}},
		ns("sr-system", "platform"), ns("acme", "acme"), ss, src, secret("one"), secret("two"),
	).Build()
	c := New(kube, kube, "platform")
	id := identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme", Partition: "default",
		ComponentID: "platform-sync-acme", SPIFFEID: spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme")}
	build := func(wantErr error) {
		t.Helper()
		c.Invalidate("acme")
		if _, err := c.Sync(ctx, id); !errors.Is(err, wantErr) {
			t.Fatalf("Sync: %v, want %v", err, wantErr)
		}
	}
	check := func(want map[string]bool) {
		t.Helper()
		if got := referenced(c); !maps.Equal(got, want) {
			t.Fatalf("referenced Secrets %v, want %v", got, want)
		}
	}
	build(nil)
	check(map[string]bool{"acme/one": true})

	// The source moves to another Secret: the first one is forgotten, data and all.
	src.Spec.CredentialsSecretRef.Name = "two"
	if err := kube.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{"acme/two": true})

	// A missing Secret stays referenced (its creation must invalidate), without data.
	src.Spec.CredentialsSecretRef.Name = "three"
	if err := kube.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{"acme/three": false})

	// The source is gone: nothing is referenced any more.
	if err := kube.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{})

	// A worker no longer enrolled, or whose SyncService is deleted, leaves nothing behind.
	src.ResourceVersion, src.Spec.CredentialsSecretRef.Name = "", "one"
	if err := kube.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{"acme/one": true})
	c.forgetSyncService(ss.UID)
	check(map[string]bool{})
	build(nil)
	if err := kube.Delete(ctx, ss); err != nil {
		t.Fatal(err)
	}
	build(ErrNotEnrolled)
	check(map[string]bool{})
}
