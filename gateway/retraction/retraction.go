// Package retraction keeps the promise of `deletionPolicy: Retract`: the
// gateway holds a finalizer on such IntegrationSources and, when one is
// deleted, marks the devices it reported unavailable before releasing it.
// Every gateway replica runs it: retraction is idempotent and the finalizer
// is removed with an optimistic lock, so replicas racing on one source do
// the same work at most twice and never lose it.
//
// It also releases retractions that the brake (spec.maxRetractPercent)
// held: the annotation integrations.serviceradar.io/approve-retraction
// names a held run, whose retraction is then carried out once (the store
// decides which replica does it) and recorded on the source's status.
package retraction

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	gqueue "github.com/serviceradar/sync-operator/gateway/workqueue"
)

// Finalizer is held on sources whose devices are retracted on deletion.
const Finalizer = "integrations.serviceradar.io/retract-devices"

// Store retracts a source's devices.
type Store interface {
	RetractSource(ctx context.Context, tenantSlug, partition, sourceUID string) (int, error)
	ReleaseRetraction(ctx context.Context, tenantSlug, partition, sourceUID, runID string) (store.Release, error)
}

// Recorder writes a source's run status after a released retraction.
type Recorder interface {
	Record(ctx context.Context, key types.NamespacedName, tenantSlug, sourceUID string, available int) error
}

// Controller adds and releases the finalizer.
type Controller struct {
	// Reader is the informer cache; Writer patches the sources.
	Reader client.Reader
	Writer client.Writer
	Store  Store
	// Runs records a released retraction on the source's status (nil: not recorded).
	Runs Recorder
	Log  logr.Logger

	queue workqueue.TypedRateLimitingInterface[types.NamespacedName]
	// approvals are the approvals (source uid and run id) this replica
	// has settled, so that a source's later changes do not ask again.
	approvals sync.Map
}

// Watch registers for IntegrationSource events on informers; call it
// before the cache starts, then Run.
func (c *Controller) Watch(ctx context.Context, informers ctrlcache.Cache) error {
	c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]())
	inf, err := informers.GetInformer(ctx, &v1alpha1.IntegrationSource{})
	if err != nil {
		return fmt.Errorf("watching integration sources: %w", err)
	}
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(client.Object); ok {
			c.queue.Add(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watching integration sources: %w", err)
	}
	return nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	gqueue.Run(ctx, c.queue, c.Log, "retraction", func(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
		return 0, c.reconcile(ctx, key)
	})
}

func (c *Controller) reconcile(ctx context.Context, key types.NamespacedName) error {
	src := &v1alpha1.IntegrationSource{}
	if err := c.Reader.Get(ctx, key, src); err != nil {
		return client.IgnoreNotFound(err) //nolint:wrapcheck // nil or a cache error, logged with the key
	}
	if err := c.approve(ctx, src); err != nil {
		return err
	}
	wants := src.Spec.DeletionPolicy == v1alpha1.DeletionPolicyRetract
	has := controllerutil.ContainsFinalizer(src, Finalizer)
	switch {
	case src.DeletionTimestamp.IsZero() && wants && !has:
		return c.patch(ctx, src, func(s *v1alpha1.IntegrationSource) { controllerutil.AddFinalizer(s, Finalizer) })
	case src.DeletionTimestamp.IsZero() && !wants && has:
		return c.patch(ctx, src, func(s *v1alpha1.IntegrationSource) { controllerutil.RemoveFinalizer(s, Finalizer) })
	case !src.DeletionTimestamp.IsZero() && has:
		ns := &corev1.Namespace{}
		if err := c.Reader.Get(ctx, client.ObjectKey{Name: src.Namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading namespace %s: %w", src.Namespace, err)
		}
		if slug := ns.Labels[v1alpha1.TenantLabel]; slug != "" {
			begin := time.Now()
			n, err := c.Store.RetractSource(ctx, slug, src.Spec.Partition, string(src.UID))
			if err != nil {
				return fmt.Errorf("retracting devices: %w", err)
			}
			c.Log.Info("retracted the devices of a deleted source", "source", key.String(), "devices", n, "took", time.Since(begin).String())
		}
		return c.patch(ctx, src, func(s *v1alpha1.IntegrationSource) { controllerutil.RemoveFinalizer(s, Finalizer) })
	}
	return nil
}

// approve releases the held retraction that the source's approval
// annotation names, once, and records it on the source's status. An
// approval of a run that is not held (released before, superseded by a
// later full run, never held, or not this source's) changes nothing.
func (c *Controller) approve(ctx context.Context, src *v1alpha1.IntegrationSource) error {
	runID := strings.TrimSpace(src.Annotations[v1alpha1.ApproveRetractionAnnotation])
	if runID == "" || !src.DeletionTimestamp.IsZero() {
		return nil
	}
	settled := string(src.UID) + "/" + runID
	if _, ok := c.approvals.Load(settled); ok {
		return nil
	}
	key := client.ObjectKeyFromObject(src)
	ns := &corev1.Namespace{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: src.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err) //nolint:wrapcheck // nil or a cache error, logged with the key
	}
	slug := ns.Labels[v1alpha1.TenantLabel]
	if slug == "" {
		return nil
	}
	rel, err := c.Store.ReleaseRetraction(ctx, slug, src.Spec.Partition, string(src.UID), runID)
	switch {
	case errors.Is(err, store.ErrUnknownRun):
		c.Log.Info("the approved run is no finished run of this source; nothing to release", "source", key.String(), "run", clipID(runID))
		c.approvals.Store(settled, true)
		return nil
	case err != nil:
		return fmt.Errorf("releasing the held retraction: %w", err)
	case !rel.Released:
		c.Log.V(1).Info("the approved retraction is not held", "source", key.String(), "run", runID, "state", rel.State)
		c.approvals.Store(settled, true)
		return nil
	}
	c.Log.Info("released a held retraction on approval", "source", key.String(), "run", runID, "retracted", rel.Retracted,
		"available", rel.Available)
	if c.Runs != nil {
		if err := c.Runs.Record(ctx, key, slug, string(src.UID), rel.Available); err != nil {
			c.Log.Error(err, "recording the released retraction", "source", key.String(), "run", runID)
		}
	}
	c.approvals.Store(settled, true)
	return nil
}

// clipID bounds an annotation value written to the log.
func clipID(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// patch changes the finalizers with an optimistic lock: a replica that lost
// the race gets a conflict and looks again.
func (c *Controller) patch(ctx context.Context, src *v1alpha1.IntegrationSource, change func(*v1alpha1.IntegrationSource)) error {
	patched := src.DeepCopy()
	change(patched)
	err := c.Writer.Patch(ctx, patched, client.MergeFromWithOptions(src, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating finalizers: %w", err)
	}
	return nil
}
