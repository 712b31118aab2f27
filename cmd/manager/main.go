// Command manager is the sync operator: it reconciles Tenants, SyncServices
// and IntegrationSources and bootstraps the platform tenant. This file only
// parses flags and wires the manager.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
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
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("manager")

	if err := run(ctrl.SetupSignalHandler(), *namespace, *platformSlug, !*noPlatformSync, *watchNS, *metricsAddr, *probeAddr, *leaderElect); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, namespace, platformSlug string, platformSync bool, watchNS, metricsAddr, probeAddr string, leaderElect bool) error {
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
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "sync-operator.integrations.serviceradar.io",
		LeaderElectionNamespace: namespace,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{Namespace: namespace, PlatformSlug: platformSlug, PlatformSync: platformSync}); err != nil {
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
