package platform_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// The upgrade hole: a tenant CA Secret without an owner (written by a
// manager before owners were recorded) is adopted only by a Tenant that is
// not younger than it. One left behind by a Tenant deleted under that
// manager (no finalizer revoked it) is replaced for a Tenant created again
// with the slug, so the old tenant's edge certificates are not trusted.
func TestUnownedTenantCAIsAdoptedOnlyByATenantNotYoungerThanIt(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "operator"}}); err != nil {
		t.Fatal(err)
	}
	s := &platform.Store{Client: env.Client, Reader: env.Client, Namespace: "operator"}
	if _, _, err := s.EnsureRootCA(ctx, platform.Evidence{}, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		// tenantAge is the Tenant's creation relative to the Secret's.
		tenantAge time.Duration
		adopted   bool
	}{
		{"a Tenant created before the CA (the CA's own, upgraded)", -time.Hour, true},
		{"a Tenant created in the CA's second", 0, true},
		{"a Tenant created after the CA (its former owner was deleted)", time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slug := "legacy"
			// An older manager's CA: created by the Store, then stripped of its owner.
			first, err := s.OwnTenantCA(ctx, slug, types.UID("former"), time.Now(), "")
			if err != nil {
				t.Fatal(err)
			}
			sec := &corev1.Secret{}
			key := client.ObjectKey{Namespace: "operator", Name: platform.TenantCASecretName(slug)}
			if err := env.Client.Get(ctx, key, sec); err != nil {
				t.Fatal(err)
			}
			delete(sec.Annotations, platform.TenantCAOwnerAnnotation)
			if err := env.Client.Update(ctx, sec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
			})

			owner := types.UID("tenant-" + tc.tenantAge.String())
			got, err := s.OwnTenantCA(ctx, slug, owner, sec.CreationTimestamp.Add(tc.tenantAge), "")
			if err != nil {
				t.Fatal(err)
			}
			same := identity.KeyFingerprint(got.Cert) == identity.KeyFingerprint(first.Cert)
			if same != tc.adopted {
				t.Fatalf("the unowned CA adopted = %v, want %v", same, tc.adopted)
			}
			now := &corev1.Secret{}
			if err := env.Client.Get(ctx, key, now); err != nil {
				t.Fatal(err)
			}
			if now.Annotations[platform.TenantCAOwnerAnnotation] != string(owner) {
				t.Fatalf("the CA Secret's owner is %q, want %q", now.Annotations[platform.TenantCAOwnerAnnotation], owner)
			}
		})
	}
}
