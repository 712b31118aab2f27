package schemas_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/schemas"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// Tenants stored before the slug limit with deletionPolicy Drop: such a
// slug has no schema of its own (the store refuses it), so the drop-schema
// finalizer could never be released and would block the Tenant's deletion
// forever. It is not added to a new one, and one an older gateway added is
// released (logged) instead of blocking.
func TestInvalidSlugNeverBlocksDeletion(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	devices, err := store.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer devices.Close()

	legacy := func(name string, finalizers ...string) *v1alpha1.Tenant {
		t.Helper()
		tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
			Spec: v1alpha1.TenantSpec{Slug: name + "-" + strings.Repeat("l", v1alpha1.MaxSlugLength), DeletionPolicy: v1alpha1.TenantDeletionDrop}}
		if err := env.CreateLegacyTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		return tn
	}
	fresh := legacy("fresh")
	held := legacy("held", schemas.Finalizer)
	// An older gateway's finalizer on a Tenant already being deleted.
	deleting := legacy("deleting", schemas.Finalizer)
	if err := env.Client.Delete(ctx, deleting); err != nil {
		t.Fatal(err)
	}
	// A valid Drop Tenant created last: once it has the finalizer, the
	// Tenants before it were looked at too.
	valid := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "valid"}, Spec: v1alpha1.TenantSpec{Slug: "valid", DeletionPolicy: v1alpha1.TenantDeletionDrop}}

	informers, err := ctrlcache.New(env.Config, ctrlcache.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	sc := &schemas.Controller{Reader: informers, Writer: env.Client, Store: devices, Log: testr.New(t)}
	if err := sc.Watch(ctx, informers); err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		t.Fatal("the informer cache did not sync")
	}
	go sc.Run(ctx)
	if err := env.Client.Create(ctx, valid); err != nil {
		t.Fatal(err)
	}
	finalizers := func(tn *v1alpha1.Tenant) ([]string, error) {
		got := &v1alpha1.Tenant{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(tn), got)
		return got.Finalizers, err
	}
	test.Eventually(t, "the drop-schema finalizer on the valid tenant", time.Minute, func() bool {
		f, err := finalizers(valid)
		return err == nil && slices.Contains(f, schemas.Finalizer)
	})
	for _, tn := range []*v1alpha1.Tenant{fresh, held} {
		test.Eventually(t, tn.Name+" without the drop-schema finalizer", time.Minute, func() bool {
			f, err := finalizers(tn)
			return err == nil && !slices.Contains(f, schemas.Finalizer)
		})
	}
	for _, tn := range []*v1alpha1.Tenant{deleting, fresh, held, valid} {
		if err := env.Client.Delete(ctx, tn); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		test.Eventually(t, tn.Name+" deleted", time.Minute, func() bool {
			_, err := finalizers(tn)
			return apierrors.IsNotFound(err)
		})
	}
}
