package catalog

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// Watch invalidates entries on the events of the kinds bundles are built
// from, through the informers of c (the gateway's cache, the same one the
// catalog reads): IntegrationSources, SyncServices, Tenants and namespaces.
// Secrets are not in that cache: each referenced Secret has its own watch
// (see secretWatch), which ends with ctx at the latest.
func (c *Catalog) Watch(ctx context.Context, informers ctrlcache.Cache) error {
	c.mu.Lock()
	c.watchCtx = ctx
	c.mu.Unlock()
	kinds := []struct {
		obj    client.Object
		handle func(old, obj client.Object)
	}{
		{&v1alpha1.IntegrationSource{}, c.onSource},
		{&v1alpha1.SyncService{}, c.onSyncService},
		{&v1alpha1.Tenant{}, c.onTenant},
		{&corev1.Namespace{}, c.onNamespace},
	}
	for _, k := range kinds {
		inf, err := informers.GetInformer(ctx, k.obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", k.obj, err)
		}
		handle := k.handle
		h := cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if o, ok := obj.(client.Object); ok {
					handle(nil, o)
				}
			},
			UpdateFunc: func(old, obj any) {
				o, ok1 := old.(client.Object)
				n, ok2 := obj.(client.Object)
				if ok1 && ok2 && !unchanged(o, n) {
					handle(o, n)
				}
			},
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if o, ok := obj.(client.Object); ok {
					handle(nil, o)
				}
				if ss, ok := obj.(*v1alpha1.SyncService); ok {
					c.forgetSyncService(ss.UID)
				}
			},
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watching %T: %w", k.obj, err)
		}
	}
	return nil
}

// unchanged reports an update that cannot change a bundle: the same spec
// generation, deletion state and labels. Status writes, heartbeats and run
// results among them, are such updates, except a Tenant's tenant id and CA
// fingerprint: entries are keyed by identity including the certificate's
// issuer, so a replaced CA (or a tenant id cleared) must drop them, or an
// edge certificate of the old CA keeps working while its entry is cached.
func unchanged(old, obj client.Object) bool {
	if _, ns := obj.(*corev1.Namespace); ns {
		return maps.Equal(old.GetLabels(), obj.GetLabels())
	}
	// A SyncService's edge identity issued afresh revokes the certificates
	// issued before it: entries built for them must go.
	if o, ok := old.(*v1alpha1.SyncService); ok {
		n, ok := obj.(*v1alpha1.SyncService)
		if !ok || !o.Status.EdgeIdentitySince.Equal(n.Status.EdgeIdentitySince) {
			return false
		}
	}
	if o, ok := old.(*v1alpha1.Tenant); ok {
		n, ok := obj.(*v1alpha1.Tenant)
		if !ok || o.Status.CAFingerprint != n.Status.CAFingerprint || o.Status.TenantID != n.Status.TenantID {
			return false
		}
	}
	return old.GetGeneration() == obj.GetGeneration() &&
		old.GetDeletionTimestamp().Equal(obj.GetDeletionTimestamp()) &&
		maps.Equal(old.GetLabels(), obj.GetLabels())
}

// invalidateSlug invalidates one tenant, or all of them for the platform's
// (whose namespaces hold the SyncServices that serve every tenant). Objects
// outside tenant namespaces ("") are in no bundle; should their namespace
// get its label later, that namespace event invalidates the tenant.
func (c *Catalog) invalidateSlug(slug string) {
	switch slug {
	case "":
		return
	case c.platformSlug:
		c.InvalidateAll()
	default:
		c.Invalidate(slug)
	}
}

// namespaceTenant returns the tenant slug of a namespace, "" when unknown.
func (c *Catalog) namespaceTenant(name string) string {
	ns := &corev1.Namespace{}
	if err := c.reader.Get(context.Background(), client.ObjectKey{Name: name}, ns); err != nil {
		return ""
	}
	return ns.Labels[v1alpha1.TenantLabel]
}

// onSource invalidates the source's tenant: only that tenant's bundles
// carry it, the platform's sources included.
func (c *Catalog) onSource(_, obj client.Object) {
	if slug := c.namespaceTenant(obj.GetNamespace()); slug != "" {
		c.Invalidate(slug)
	}
}

func (c *Catalog) onSyncService(_, obj client.Object) {
	c.invalidateSlug(c.namespaceTenant(obj.GetNamespace()))
}

func (c *Catalog) onTenant(_, obj client.Object) {
	if t, ok := obj.(*v1alpha1.Tenant); ok {
		c.invalidateSlug(t.Spec.Slug)
	}
}

func (c *Catalog) onNamespace(old, obj client.Object) {
	if old != nil {
		c.invalidateSlug(old.GetLabels()[v1alpha1.TenantLabel])
	}
	c.invalidateSlug(obj.GetLabels()[v1alpha1.TenantLabel])
}

// secretChanged invalidates the tenant whose sources reference a Secret
// that changed, as its watch w saw; a watch already replaced or stopped is
// of no interest.
func (c *Catalog) secretChanged(key types.NamespacedName, w *secretWatch) {
	c.mu.Lock()
	r := c.refs[key]
	current := r != nil && r.watch == w
	slug := ""
	if current {
		slug = r.slug
	}
	c.mu.Unlock()
	if current {
		c.invalidateSlug(slug)
	}
}
