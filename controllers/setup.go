package controllers

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=serviceradar-system,resources=leases,verbs=get;list;watch;create;update;patch
// Leader election records each new leader as a core Event on its Lease.
// +kubebuilder:rbac:groups="",namespace=serviceradar-system,resources=events,verbs=create;patch
// The bootstrap labels the operator namespace for the platform tenant, and
// no other: a Role of that namespace grants patch on the namespace itself.
// +kubebuilder:rbac:groups="",namespace=serviceradar-system,resources=namespaces,verbs=patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants,verbs=create
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices,verbs=create

// DefaultKubeAPIQPS and DefaultKubeAPIBurst are the manager's client rate
// limit to the Kubernetes API (flags --kube-api-qps and --kube-api-burst,
// chart manager.kubeAPI.qps and .burst). They bound how fast a mass
// onboarding is written (about 11 writes per tenant of four sources);
// once converged the manager writes nothing, and the API server's
// priority and fairness still queues it behind the cluster's own traffic.
const (
	DefaultKubeAPIQPS   = 100
	DefaultKubeAPIBurst = 200
)

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
	// EdgeGatewayAddress (host:port) is where OnPrem workers at tenants' edges
	// reach the gateway from outside the cluster, written into onboarding
	// bundles of SyncServices that set no spec.gatewayAddress; its host is put
	// on the certificate of GatewayTLSSecret. Empty: such SyncServices get no
	// bundle and say so in their Ready condition.
	EdgeGatewayAddress string
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
	// GatewayTrust is what the gateway verifies workers' SVIDs against (the
	// chart sets it from spire.enabled); empty means GatewayTrustOperator.
	// SaaS SyncServices whose workers would get SVIDs the gateway does not
	// trust run no workers and are not Ready.
	GatewayTrust GatewayTrust
	// SPIREClassName is the className of the ClusterSPIFFEIDs rendered for
	// workers: the class of the SPIRE controller manager that issues their
	// SVIDs (empty: className is left out, for a controller manager that
	// watches classless objects).
	SPIREClassName string
	// Now is the clock of certificate issuance and renewal; nil means time.Now.
	Now func() time.Time
	// IdentityCheckInterval is how often the leader checks that the platform
	// identity Secrets exist; zero means DefaultIdentityCheckInterval.
	IdentityCheckInterval time.Duration
}

// DefaultSPIREClassName is the class the SPIRE Helm charts
// (spiffe/helm-charts-hardened) give their controller manager in the
// install their README documents for production,
// `helm upgrade --install -n spire-mgmt spire spire`: with
// spire-server.controllerManager.className empty (its default), the
// template "spire-server.controller-manager-class-name" sets it to
// "<Release.Namespace>-<Release.Name>", and the controller manager then acts
// only on custom resources of that class (watchClassless defaults to false).
// Sources: charts/spire/charts/spire-server/templates/_helpers.tpl at commit
// d98c474225f840663410e9d393e25c8af6807ae5, charts/spire/charts/spire-server/values.yaml
// at e688a2eab4760c9f21a53befb593f596bbe64945 and charts/spire/README.md at
// 5f46d7bfc2736ea8aa87601ff2071df33b15ff58. The README's quick install
// (`-n spire-server spire`) yields "spire-server-spire" instead.
const DefaultSPIREClassName = "spire-mgmt-spire"

// GatewayTrust is the root the gateway verifies workers' SVIDs against.
type GatewayTrust string

const (
	// GatewayTrustOperator is a gateway that verifies SVIDs against the
	// operator's platform root CA only (its PEM files; chart
	// spire.enabled=false): workers need operator-issued SVIDs.
	GatewayTrustOperator GatewayTrust = "operator"
	// GatewayTrustSPIRE is a gateway that verifies SVIDs against SPIRE's trust
	// bundle from the Workload API only (chart spire.enabled=true): workers
	// need SPIRE SVIDs; the operator's root is trusted at most for edge
	// certificates without a SPIFFE ID.
	GatewayTrustSPIRE GatewayTrust = "spire"
)

// ParseGatewayTrust parses "operator" or "spire".
func ParseGatewayTrust(s string) (GatewayTrust, error) {
	switch t := GatewayTrust(s); t {
	case GatewayTrustOperator, GatewayTrustSPIRE:
		return t, nil
	default:
		return "", fmt.Errorf("gateway trust %q: want %q or %q", s, GatewayTrustOperator, GatewayTrustSPIRE)
	}
}

// Setup registers the indexes, the bootstrap and every controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	store := &platform.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Now: opts.Now, Verified: true}
	// The bootstrap tells the Tenant controller when the platform identity
	// is recovered, re-keyed or refused.
	resync, wakeGatewayCert := make(chan event.GenericEvent, 1), make(chan event.GenericEvent, 1)
	if err := mgr.Add(&Bootstrap{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: store,
		PlatformSlug: opts.PlatformSlug, PlatformSync: opts.PlatformSync,
		Log: mgr.GetLogger().WithName("bootstrap"), Events: mgr.GetEventRecorder("sync-operator-bootstrap"),
		Resync: []chan<- event.GenericEvent{resync, wakeGatewayCert}, IdentityCheckInterval: opts.IdentityCheckInterval,
	}); err != nil {
		return fmt.Errorf("adding platform bootstrap: %w", err)
	}
	if err := (&TenantReconciler{
		Client: mgr.GetClient(), Platform: store, PlatformSlug: opts.PlatformSlug,
		Events: mgr.GetEventRecorder("sync-operator-tenant"), Resync: resync,
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
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: store, Name: opts.GatewayTLSSecret, ID: id,
			DNSNames: opts.gatewayCertNames(), Lifetime: opts.GatewayCertLifetime,
			Now: opts.Now, Log: mgr.GetLogger().WithName("gateway-certificate"), Wake: wakeGatewayCert,
		}); err != nil {
			return fmt.Errorf("adding the gateway certificate keeper: %w", err)
		}
	}
	image := opts.WorkerImage
	if image == "" {
		image = workload.DefaultImage
	}
	trust := opts.GatewayTrust
	if trust == "" {
		trust = GatewayTrustOperator
	}
	if _, err := ParseGatewayTrust(string(trust)); err != nil {
		return err
	}
	// The names on the gateway certificate are known when the manager issues
	// it; a certificate of the user's own is not checked.
	var certNames []string
	if opts.GatewayTLSSecret != "" {
		certNames = opts.gatewayCertNames()
	}
	return (&SyncServiceReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: store, Events: mgr.GetEventRecorder("sync-operator-syncservice"),
		GatewayAddress: opts.GatewayAddress, GatewayServerName: opts.GatewayServerName,
		EdgeGatewayAddress: opts.EdgeGatewayAddress, GatewayCertNames: certNames,
		TrustDomain: td, WorkerImage: image, SVIDLifetime: opts.SVIDLifetime, EdgeLifetime: opts.EdgeLifetime,
		GatewayTrust: trust, SPIREClassName: opts.SPIREClassName, Now: opts.Now,
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

// gatewayCertNames are the DNS names and IP addresses on the certificate the
// manager issues the gateway: its in-cluster server name, the configured
// extra names and the host of the edge address.
func (o Options) gatewayCertNames() []string {
	names := append([]string{o.GatewayServerName}, o.GatewayDNSNames...)
	if host, _, err := net.SplitHostPort(o.EdgeGatewayAddress); err == nil && host != "" {
		names = append(names, host)
	}
	return names
}
