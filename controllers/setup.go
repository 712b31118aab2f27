package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/serviceradar/sync-operator/platform"
)

// +kubebuilder:rbac:groups="",namespace=serviceradar-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=serviceradar-system,resources=leases,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants,verbs=create
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices,verbs=create

// Options configure the controllers.
type Options struct {
	// Namespace is the operator namespace, holding the platform Secrets and the platform SyncService.
	Namespace string
	// PlatformSlug is the reserved slug of the platform tenant.
	PlatformSlug string
	// PlatformSync creates the platform SyncService at bootstrap.
	PlatformSync bool
}

// Setup registers the indexes, the bootstrap and every controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	store := &platform.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace}
	if err := mgr.Add(&Bootstrap{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: store,
		PlatformSlug: opts.PlatformSlug, PlatformSync: opts.PlatformSync,
		Log: mgr.GetLogger().WithName("bootstrap"),
	}); err != nil {
		return fmt.Errorf("adding platform bootstrap: %w", err)
	}
	if err := (&TenantReconciler{
		Client: mgr.GetClient(), Platform: store, PlatformSlug: opts.PlatformSlug,
		Events: mgr.GetEventRecorder("sync-operator-tenant"),
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&IntegrationSourceReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Events: mgr.GetEventRecorder("sync-operator-integrationsource"),
	}).SetupWithManager(mgr)
}
