package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=serviceradar-system,resources=leases,verbs=get;list;watch;create;update;patch
// The bootstrap labels the operator namespace for the platform tenant, and
// no other: a Role of that namespace grants patch on the namespace itself.
// +kubebuilder:rbac:groups="",namespace=serviceradar-system,resources=namespaces,verbs=patch
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
	// GatewayAddress (host:port) is written into worker bootstraps and onboarding bundles.
	GatewayAddress string
	// GatewayServerName is the DNS name edge workers verify on the gateway's certificate.
	GatewayServerName string
	// TrustDomain is the SPIFFE trust domain of worker identities.
	TrustDomain spiffeid.TrustDomain
	// WorkerImage is the default image of worker Deployments.
	WorkerImage string
	// SVIDLifetime is the lifetime of operator-issued worker SVIDs.
	SVIDLifetime time.Duration
	// EdgeLifetime is the lifetime of edge client certificates in onboarding bundles.
	EdgeLifetime time.Duration
	// GatewayTLSSecret, when set, is the Secret of the operator namespace in
	// which the manager keeps the gateway's certificate (installs without
	// SPIRE), with the SPIFFE ID of GatewaySPIFFEID, GatewayServerName and
	// GatewayDNSNames on it, for GatewayCertLifetime.
	GatewayTLSSecret    string
	GatewayDNSNames     []string
	GatewayCertLifetime time.Duration
	// GatewayServiceAccount is the gateway's ServiceAccount in Namespace: in
	// each tenant namespace, the manager grants it the credentials Secrets
	// that IntegrationSources reference, and nothing else (empty: no grants;
	// the gateway then reads no credentials unless given them otherwise).
	GatewayServiceAccount string
	// Now is the clock of certificate issuance and renewal; nil means time.Now.
	Now func() time.Time
}

// Setup registers the indexes, the bootstrap and every controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	store := &platform.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Now: opts.Now}
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
	guard := &SecretGuard{Client: mgr.GetClient(), Namespace: opts.Namespace, GatewayTLSSecret: opts.GatewayTLSSecret}
	if err := (&IntegrationSourceReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Guard: guard,
		Events: mgr.GetEventRecorder("sync-operator-integrationsource"),
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := setupGatewayAccess(mgr, opts, guard); err != nil {
		return err
	}
	td := opts.TrustDomain
	if td.IsZero() {
		td = spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)
	}
	if opts.GatewayTLSSecret != "" {
		id, err := GatewaySPIFFEID(td, opts.PlatformSlug)
		if err != nil {
			return err
		}
		if err := mgr.Add(&GatewayCertificate{
			Client: mgr.GetClient(), Store: store, Name: opts.GatewayTLSSecret, ID: id,
			DNSNames: append([]string{opts.GatewayServerName}, opts.GatewayDNSNames...), Lifetime: opts.GatewayCertLifetime,
			Now: opts.Now, Log: mgr.GetLogger().WithName("gateway-certificate"),
		}); err != nil {
			return fmt.Errorf("adding the gateway certificate keeper: %w", err)
		}
	}
	image := opts.WorkerImage
	if image == "" {
		image = workload.DefaultImage
	}
	return (&SyncServiceReconciler{
		Client: mgr.GetClient(), Store: store, Events: mgr.GetEventRecorder("sync-operator-syncservice"),
		GatewayAddress: opts.GatewayAddress, GatewayServerName: opts.GatewayServerName,
		TrustDomain: td, WorkerImage: image, SVIDLifetime: opts.SVIDLifetime, EdgeLifetime: opts.EdgeLifetime,
		Now: opts.Now,
	}).SetupWithManager(mgr)
}

// GatewaySPIFFEID is the SPIFFE ID on the gateway certificate the manager
// issues: spiffe://<trust domain>/gateway/<platform slug>/default/sync-gateway.
func GatewaySPIFFEID(td spiffeid.TrustDomain, platformSlug string) (spiffeid.ID, error) {
	id, err := identity.FormatSPIFFEID(td, identity.ComponentGateway, platformSlug, "default", "sync-gateway")
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("gateway SPIFFE ID: %w", err)
	}
	return id, nil
}
