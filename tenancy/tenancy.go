// Package tenancy holds the one rule that decides which Tenant a slug names.
// The manager (which runs workers and issues identities), the gateway's
// catalog (which serves bundles) and its schema controller (which prepares
// and drops PostgreSQL schemas) all ask it, so they never disagree about
// whether a tenant is served.
package tenancy

import (
	"slices"
	"strings"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// OldestFirst orders Tenants by creation, then name: the oldest Tenant of a
// slug is the one that had it alone before any other came, so the schema's
// data and the CA are its own.
func OldestFirst(a, b v1alpha1.Tenant) int {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		if a.CreationTimestamp.Before(&b.CreationTimestamp) {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// WithSlug returns the Tenants of ts that claim slug, deleted ones included,
// oldest first (OldestFirst). ts is not modified.
func WithSlug(ts []v1alpha1.Tenant, slug string) []v1alpha1.Tenant {
	var out []v1alpha1.Tenant
	for i := range ts {
		if ts[i].Spec.Slug == slug {
			out = append(out, ts[i])
		}
	}
	slices.SortFunc(out, OldestFirst)
	return out
}

// Resolve returns the Tenant that slug names among ts (all Tenants, or at
// least all of those with the slug), or nil when it names none that may be
// served:
//   - the slug is not valid (v1alpha1.ValidSlug: a Tenant stored before the
//     limit), since the names derived from it could be another tenant's;
//   - no Tenant claims it;
//   - several do and the oldest is not a platform Tenant: the API server
//     cannot refuse a second Tenant with a slug (a CEL rule sees one
//     object), so an ambiguous slug is refused, never resolved to one;
//   - the Tenant it names is being deleted.
//
// The platform slug is the one exception the platform rule settles: the
// oldest platform Tenant is the platform tenant, and a younger Tenant with
// its slug is refused on its own (never given a tenant id or CA), so it does
// not take the platform down with it.
func Resolve(ts []v1alpha1.Tenant, slug string) *v1alpha1.Tenant {
	if v1alpha1.ValidSlug(slug) != nil {
		return nil
	}
	same := WithSlug(ts, slug)
	if len(same) == 0 {
		return nil
	}
	t := &same[0]
	if len(same) > 1 && !t.Spec.Platform {
		return nil
	}
	if !t.DeletionTimestamp.IsZero() {
		return nil
	}
	return t
}
