package catalog

import (
	"context"
	"fmt"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/identity"
)

// Named returns the SyncService that an identity names, whether or not
// the identity is accepted: the one Sync would serve it as, had its
// certificate not been revoked or issued by another CA. It returns nil when
// the identity's tenant is not onboarded or names no SyncService (or
// several). The gateway uses it to tell a SyncService that its certificate
// was refused; it is not an authorization.
func (c *Catalog) Named(ctx context.Context, id identity.Identity) (*v1alpha1.SyncService, error) {
	t, err := c.tenant(ctx, id.TenantSlug)
	if err != nil || t == nil || t.Status.TenantID == "" {
		return nil, err
	}
	in, err := c.inputs(ctx, id, t.Status.TenantID)
	if err != nil {
		return nil, fmt.Errorf("finding the SyncService of %s: %w", id, err)
	}
	ss, err := bundle.SyncServiceFor(in, c.platformSlug)
	if err != nil {
		return nil, nil //nolint:nilerr // an ambiguous identity names none
	}
	return ss, nil
}
