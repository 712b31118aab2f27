// Command manager is the sync operator: it reconciles Tenants, SyncServices
// and IntegrationSources and bootstraps the platform tenant. This file only
// parses flags and wires the manager.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/version"
	"github.com/serviceradar/sync-operator/workload"
)

func main() {
	var (
		namespace      = flag.String("namespace", envOr("POD_NAMESPACE", "serviceradar-system"), "operator namespace: platform Secrets and the platform SyncService live here")
		platformSlug   = flag.String("platform-slug", identity.DefaultPlatformSlug, "reserved slug of the platform tenant")
		noPlatformSync = flag.Bool("disable-platform-sync", false, "do not create the platform SyncService at bootstrap")
		watchNS        = flag.String("watch-namespaces", "", "comma-separated namespaces to reconcile (empty: all)")
		metricsAddr    = flag.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
		probeAddr      = flag.String("health-probe-bind-address", ":8081", "address of the liveness and readiness endpoints")
		leaderElect    = flag.Bool("leader-elect", true, "elect a leader so only one replica reconciles")
		leaseDuration  = flag.Duration("leader-elect-lease-duration", defaultLeaseDuration, "how long a replica waits, after the leader last renewed its lease, before it takes the lease over (a leader that stops gracefully releases it at once)")
		renewDeadline  = flag.Duration("leader-elect-renew-deadline", defaultRenewDeadline, "how long the leader keeps trying to renew its lease before it gives up leading (and exits); below --leader-elect-lease-duration")
		retryPeriod    = flag.Duration("leader-elect-retry-period", defaultRetryPeriod, "how often replicas try to acquire or renew the lease")
		gatewayAddr    = flag.String("gateway-address", "sync-gateway.serviceradar-system.svc:50052", "gateway host:port written into worker bootstraps and onboarding bundles")
		edgeAddr       = flag.String("edge-gateway-address", "", "host:port at which OnPrem workers at tenants' edges reach the gateway from outside the cluster (a LoadBalancer, NodePort or TLS-passthrough route), written into onboarding bundles of SyncServices without spec.gatewayAddress; its host is put on the gateway certificate of --gateway-tls-secret (empty: such SyncServices get no bundle and say why)")
		gatewayName    = flag.String("gateway-server-name", "", "DNS name edge workers verify on the gateway certificate (default: the host of --gateway-address)")
		trustDomain    = flag.String("trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of worker identities")
		workerImage    = flag.String("worker-image", workload.DefaultImage, "default image of worker Deployments")
		svidLifetime   = flag.Duration("svid-lifetime", 24*time.Hour, "lifetime of operator-issued worker SVIDs (renewed at two thirds)")
		apiQPS         = flag.Float64("kube-api-qps", controllers.DefaultKubeAPIQPS, "requests per second to the Kubernetes API (client-side rate limit)")
		apiBurst       = flag.Int("kube-api-burst", controllers.DefaultKubeAPIBurst, "burst of requests to the Kubernetes API (client-side rate limit)")
		edgeLifetime   = flag.Duration("edge-cert-lifetime", 90*24*time.Hour, "lifetime of edge certificates in onboarding bundles (renewed at two thirds)")
		gatewayTLS     = flag.String("gateway-tls-secret", "", "Secret of the operator namespace in which to keep the gateway's certificate, issued by the platform root CA (installs without SPIRE; empty: none)")
		gatewayDNS     = flag.String("gateway-dns-names", "", "comma-separated DNS names on that certificate besides --gateway-server-name")
		gatewayCertTTL = flag.Duration("gateway-cert-lifetime", controllers.DefaultGatewayCertLifetime, "lifetime of that certificate (renewed at two thirds)")
		gatewaySA      = flag.String("gateway-service-account", "sync-gateway", "the gateway's ServiceAccount in the operator namespace: the manager grants it, per namespace, only the credentials Secrets that IntegrationSources reference (empty: no grants)")
		gatewayTrust   = flag.String("gateway-trust", string(controllers.GatewayTrustOperator), "what the gateway verifies worker SVIDs against: \"operator\" (the operator's root CA, a gateway with PEM files; chart spire.enabled=false) or \"spire\" (SPIRE's trust bundle from the Workload API; chart spire.enabled=true). A SaaS SyncService whose workers would get SVIDs the gateway does not trust runs no workers and is not Ready (reason GatewayTrustMismatch)")
		spireClass     = flag.String("spire-class-name", controllers.DefaultSPIREClassName, "className of the ClusterSPIFFEIDs rendered for workers: the class of the SPIRE controller manager that issues their SVIDs (the SPIRE Helm charts default to <release namespace>-<release name>; empty: no className, for a controller manager that watches classless objects)")
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("manager"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("manager")

	td, err := spiffeid.TrustDomainFromString(*trustDomain)
	if err != nil {
		log.Error(err, "invalid --trust-domain")
		os.Exit(2)
	}
	trust, err := controllers.ParseGatewayTrust(*gatewayTrust)
	if err != nil {
		log.Error(err, "invalid --gateway-trust")
		os.Exit(2)
	}
	if *edgeAddr != "" {
		if host, _, err := net.SplitHostPort(*edgeAddr); err != nil || host == "" {
			log.Error(fmt.Errorf("%q is not host:port", *edgeAddr), "invalid --edge-gateway-address")
			os.Exit(2)
		}
	}
	serverName := *gatewayName
	if serverName == "" {
		if host, _, err := net.SplitHostPort(*gatewayAddr); err == nil {
			serverName = host
		}
	}
	opts := controllers.Options{
		Namespace: *namespace, PlatformSlug: *platformSlug, PlatformSync: !*noPlatformSync,
		GatewayAddress: *gatewayAddr, GatewayServerName: serverName, EdgeGatewayAddress: *edgeAddr, TrustDomain: td,
		WorkerImage: *workerImage, SVIDLifetime: *svidLifetime, EdgeLifetime: *edgeLifetime,
		GatewayTLSSecret: *gatewayTLS, GatewayDNSNames: splitList(*gatewayDNS), GatewayCertLifetime: *gatewayCertTTL,
		GatewayServiceAccount: *gatewaySA, GatewayTrust: trust, SPIREClassName: *spireClass,
	}
	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(*apiQPS), *apiBurst
	election := leaderElection{Enabled: *leaderElect, LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod}
	if err := election.validate(); err != nil {
		log.Error(err, "invalid leader election flags")
		os.Exit(2)
	}
	if err := run(ctrl.SetupSignalHandler(), cfg, opts, *watchNS, *metricsAddr, *probeAddr, election); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// leaderElectionID names the Lease, in the operator namespace, that the
// manager's replicas hold to lead.
const leaderElectionID = "sync-operator.integrations.serviceradar.io"

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Defaults of the leader election flags: controller-runtime's own.
const (
	defaultLeaseDuration = 15 * time.Second
	defaultRenewDeadline = 10 * time.Second
	defaultRetryPeriod   = 2 * time.Second
)

// leaderElection is how replicas of the manager elect the one that
// reconciles: a Lease in the operator namespace.
type leaderElection struct {
	Enabled                                   bool
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// validate checks the durations as client-go's leader elector would,
// before the manager starts.
func (e leaderElection) validate() error {
	switch {
	case !e.Enabled:
		return nil
	case e.LeaseDuration <= 0 || e.RenewDeadline <= 0 || e.RetryPeriod <= 0:
		return errors.New("--leader-elect-lease-duration, --leader-elect-renew-deadline and --leader-elect-retry-period must be positive")
	case e.LeaseDuration <= e.RenewDeadline:
		return fmt.Errorf("--leader-elect-lease-duration %s must be longer than --leader-elect-renew-deadline %s", e.LeaseDuration, e.RenewDeadline)
	case float64(e.RenewDeadline) <= 1.2*float64(e.RetryPeriod):
		return fmt.Errorf("--leader-elect-renew-deadline %s must be longer than 1.2 x --leader-elect-retry-period %s", e.RenewDeadline, e.RetryPeriod)
	}
	return nil
}

func run(ctx context.Context, cfg *rest.Config, opts controllers.Options, watchNS, metricsAddr, probeAddr string, election leaderElection) error {
	namespace := opts.Namespace
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	cacheOpts := cache.Options{}
	if watchNS != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{namespace: {}}
		for _, ns := range strings.Split(watchNS, ",") {
			cacheOpts.DefaultNamespaces[strings.TrimSpace(ns)] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          election.Enabled,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: namespace,
		LeaseDuration:           &election.LeaseDuration,
		RenewDeadline:           &election.RenewDeadline,
		RetryPeriod:             &election.RetryPeriod,
		// main exits as soon as the manager stops, so the leader may hand
		// the lease back on SIGTERM: another replica takes over at once
		// instead of after the lease duration.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := controllers.Setup(ctx, mgr, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding liveness check: %w", err)
	}
	// Ready only once the informer caches have synced.
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("caches have not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
