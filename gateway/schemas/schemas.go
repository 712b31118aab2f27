// Package schemas keeps each tenant's PostgreSQL schema in step with its
// Tenant, in the gateway (the only component with the database): the schema
// is prepared when the Tenant appears, forgotten by every replica when it is
// deleted, and dropped before the Tenant goes when its deletionPolicy is
// Drop. For Drop the gateway holds a finalizer on the Tenant, as it does on
// IntegrationSources for Retract (see package retraction); every replica
// runs this, dropping is idempotent and the finalizer is removed with an
// optimistic lock.
//
// Work is keyed by slug, not by Tenant name: the schema belongs to the slug,
// and events of a deleted Tenant and of one created again with its slug must
// be handled in order.
package schemas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	gqueue "github.com/serviceradar/sync-operator/gateway/workqueue"
	"github.com/serviceradar/sync-operator/tenancy"
)

// Finalizer is held on Tenants whose schema is dropped on deletion.
const Finalizer = "integrations.serviceradar.io/drop-schema"

// Store prepares, forgets and drops tenant schemas (a *store.Store).
type Store interface {
	EnsureTenant(ctx context.Context, slug string) error
	ForgetTenant(slug string)
	DropTenant(ctx context.Context, slug string) error
}

// Controller keeps the schemas and the finalizer.
type Controller struct {
	// Reader is the informer cache; Writer patches Tenants.
	Reader client.Reader
	Writer client.Writer
	Store  Store
	Log    logr.Logger

	queue workqueue.TypedRateLimitingInterface[string]
}

// Watch registers for Tenant events on informers; call it before the cache
// starts, then Run.
func (c *Controller) Watch(ctx context.Context, informers ctrlcache.Cache) error {
	c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	if err := informers.IndexField(ctx, &v1alpha1.Tenant{}, indexSlug, func(o client.Object) []string {
		if t, ok := o.(*v1alpha1.Tenant); ok {
			return []string{t.Spec.Slug}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing tenants by slug: %w", err)
	}
	inf, err := informers.GetInformer(ctx, &v1alpha1.Tenant{})
	if err != nil {
		return fmt.Errorf("watching tenants: %w", err)
	}
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if t, ok := obj.(*v1alpha1.Tenant); ok && t.Spec.Slug != "" {
			c.queue.Add(t.Spec.Slug)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watching tenants: %w", err)
	}
	return nil
}

// Workers is how many slugs are worked on at once: preparing a new
// schema is a few DDL transactions, and schemas are locked one by one (see
// store.EnsureTenant), so a gateway starting on a thousand new tenants
// migrates several schemas at a time.
const Workers = 4

// indexSlug indexes Tenants by spec.slug in the informer cache, so a
// reconcile reads its slug's Tenants, not every Tenant.
const indexSlug = "spec.slug"

// Run works until ctx ends, Workers slugs at a time (never one slug twice at
// once).
func (c *Controller) Run(ctx context.Context) {
	gqueue.RunWorkers(ctx, c.queue, c.Log, "tenant schema work", Workers, func(ctx context.Context, slug string) (time.Duration, error) {
		return 0, c.reconcile(ctx, slug)
	})
}

func (c *Controller) reconcile(ctx context.Context, slug string) error {
	var all v1alpha1.TenantList
	if err := c.Reader.List(ctx, &all, client.MatchingFields{indexSlug: slug}); err != nil {
		return fmt.Errorf("listing tenants: %w", err)
	}
	// The oldest Tenant of a slug is the one that had it alone before the
	// others came, so the schema's data is its own.
	ts := tenancy.WithSlug(all.Items, slug)
	// A slug refused since its Tenant was stored has no schema of its own
	// (store.CheckSlug refuses it, and its name could be another slug's):
	// nothing can be dropped, so the finalizer would block deletion forever.
	slugErr := v1alpha1.ValidSlug(slug)
	var errs []error
	for i := range ts {
		t := &ts[i]
		has := controllerutil.ContainsFinalizer(t, Finalizer)
		wants := t.Spec.DeletionPolicy == v1alpha1.TenantDeletionDrop && slugErr == nil
		switch {
		case t.DeletionTimestamp.IsZero():
			if has && slugErr != nil {
				c.Log.Info("WARNING: releasing the drop-schema finalizer of a tenant whose slug is invalid: it has no schema of its own to drop",
					"tenant", slug, "name", t.Name, "reason", slugErr.Error())
			}
			if wants != has {
				errs = append(errs, c.patch(ctx, t, func(t *v1alpha1.Tenant) {
					if wants {
						controllerutil.AddFinalizer(t, Finalizer)
					} else {
						controllerutil.RemoveFinalizer(t, Finalizer)
					}
				}))
			}
		case has && slugErr != nil:
			c.Log.Info("WARNING: releasing the drop-schema finalizer of a deleted tenant without dropping anything: its slug is invalid, so it has no schema of its own",
				"tenant", slug, "name", t.Name, "reason", slugErr.Error())
			errs = append(errs, c.patch(ctx, t, func(t *v1alpha1.Tenant) { controllerutil.RemoveFinalizer(t, Finalizer) }))
		case has:
			// Only the oldest Tenant of the slug owns the schema: a younger
			// duplicate (never served) going away leaves it alone.
			if i == 0 {
				if err := c.Store.DropTenant(ctx, slug); err != nil {
					errs = append(errs, err)
					continue
				}
				c.Log.Info("dropped the schema of a deleted tenant", "tenant", slug, "name", t.Name)
			}
			errs = append(errs, c.patch(ctx, t, func(t *v1alpha1.Tenant) { controllerutil.RemoveFinalizer(t, Finalizer) }))
		}
	}
	if tenancy.Resolve(ts, slug) != nil {
		errs = append(errs, c.Store.EnsureTenant(ctx, slug))
	} else {
		// Deleted, being deleted, claimed twice or invalid: nothing is
		// served to it, and this replica keeps nothing of its schema.
		c.Store.ForgetTenant(slug)
	}
	return errors.Join(errs...)
}

// patch changes the finalizers with an optimistic lock: a replica that lost
// the race gets a conflict and looks again.
func (c *Controller) patch(ctx context.Context, t *v1alpha1.Tenant, change func(*v1alpha1.Tenant)) error {
	patched := t.DeepCopy()
	change(patched)
	err := c.Writer.Patch(ctx, patched, client.MergeFromWithOptions(t, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating the finalizers of tenant %s: %w", t.Name, err)
	}
	return nil
}
