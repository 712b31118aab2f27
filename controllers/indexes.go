package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// Field indexes the controllers look objects up by.
const (
	// IndexTenantSlug indexes Tenants by spec.slug.
	IndexTenantSlug = "spec.slug"
	// IndexSourceSecret indexes IntegrationSources by their credentials Secret name.
	IndexSourceSecret = "spec.credentialsSecretRef.name"
	// IndexSourceSyncService indexes IntegrationSources by the SyncService
	// they name (IntegrationSource.SyncServiceKey), as "<namespace>/<name>"
	// (types.NamespacedName.String).
	IndexSourceSyncService = "spec.syncServiceRef"
)

func setupIndexes(ctx context.Context, mgr manager.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.Tenant{}, IndexTenantSlug, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Tenant).Spec.Slug}
	}); err != nil {
		return fmt.Errorf("indexing tenants by slug: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.IntegrationSource{}, IndexSourceSecret, func(o client.Object) []string {
		if ref := o.(*v1alpha1.IntegrationSource).Spec.CredentialsSecretRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing sources by Secret: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.IntegrationSource{}, IndexSourceSyncService, func(o client.Object) []string {
		return []string{o.(*v1alpha1.IntegrationSource).SyncServiceKey().String()}
	}); err != nil {
		return fmt.Errorf("indexing sources by SyncService: %w", err)
	}
	return nil
}
