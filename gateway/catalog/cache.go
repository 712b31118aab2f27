package catalog

import (
	"k8s.io/apimachinery/pkg/runtime"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
)

// CacheOptions are the options of the informer cache the catalog reads and
// watches: Tenants, SyncServices, IntegrationSources and namespaces, with
// managed fields stripped. Secrets are never in it: the gateway may not list
// or watch them at large (its RBAC grants only the referenced ones, by name),
// and the catalog watches each referenced Secret by itself.
func CacheOptions(scheme *runtime.Scheme) ctrlcache.Options {
	return ctrlcache.Options{
		Scheme:           scheme,
		DefaultTransform: ctrlcache.TransformStripManagedFields(),
	}
}
