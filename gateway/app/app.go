// Package app wires the agent-gateway process: identity (PEM files or the
// SPIFFE Workload API), the informer cache of CRs (never of Secrets), the
// config-plane server over mTLS, the gRPC health and reflection services and
// Prometheus metrics (per-RPC counts and latencies, control streams, config
// pushes and acks, heartbeat writes).
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/retraction"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Config is everything the gateway process needs.
type Config struct {
	// Kube reaches the Kubernetes API.
	Kube *rest.Config
	// Listen is the gRPC address; Metrics the Prometheus address ("" disables it).
	Listen, Metrics string
	// Pprof serves net/http/pprof for diagnostics ("" disables it, the
	// default); bind it to loopback.
	Pprof string
	// Identity: either CertFile/KeyFile/CAFile, or WorkloadAPIAddr (with
	// SPIFFEID picking the gateway's SVID and EdgeCAFile the platform root).
	CertFile, KeyFile, CAFile string
	WorkloadAPIAddr, SPIFFEID string
	EdgeCAFile                string
	TrustDomain, PlatformSlug string
	GatewayID                 string
	Heartbeat, Poll           time.Duration
	// PostgresDSN reaches the device store; empty refuses StreamStatus.
	PostgresDSN string
	// DeviceCacheEntries bounds the in-memory device cache (identifiers and
	// device states): 0 takes store.DefaultCacheEntries, a negative number
	// disables it.
	DeviceCacheEntries int
	Log                logr.Logger
	// Ready is called with the bound gRPC address once the gateway serves.
	Ready func(addr string)
}

func (c Config) source(ctx context.Context, td spiffeid.TrustDomain) (mtls.Source, func(), error) {
	if c.WorkloadAPIAddr == "" {
		src, err := mtls.NewFileSource(c.CertFile, c.KeyFile, c.CAFile, td)
		return src, func() {}, err
	}
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr(c.WorkloadAPIAddr))}
	if c.SPIFFEID != "" {
		id, err := spiffeid.FromString(c.SPIFFEID)
		if err != nil {
			return nil, nil, fmt.Errorf("--spiffe-id: %w", err)
		}
		opts = append(opts, mtls.PickSVID(id))
	}
	x, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the Workload API at %s: %w", c.WorkloadAPIAddr, err)
	}
	var edge *mtls.FileRoots
	if c.EdgeCAFile != "" {
		if edge, err = mtls.NewFileRoots(c.EdgeCAFile); err != nil {
			_ = x.Close()
			return nil, nil, err
		}
	}
	return mtls.NewWorkloadSource(x, edge), func() { _ = x.Close() }, nil
}

// newScheme knows the kinds the gateway reads.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	return scheme, nil
}

// newInformers is the gateway's cache: CRs, namespaces and Secret metadata
// slimmed to what the catalog needs. Secret data is read one Secret at a
// time, only for Secrets that sources reference.
func newInformers(kube *rest.Config, scheme *runtime.Scheme) (ctrlcache.Cache, error) {
	informers, err := ctrlcache.New(kube, catalog.CacheOptions(scheme))
	if err != nil {
		return nil, fmt.Errorf("creating cache: %w", err)
	}
	return informers, nil
}

// Run serves until ctx ends.
func Run(ctx context.Context, c Config) error {
	classifier, err := identity.NewClassifier(c.TrustDomain, c.PlatformSlug)
	if err != nil {
		return err
	}
	src, closeSrc, err := c.source(ctx, classifier.TrustDomain)
	if err != nil {
		return err
	}
	defer closeSrc()

	scheme, err := newScheme()
	if err != nil {
		return err
	}
	informers, err := newInformers(c.Kube, scheme)
	if err != nil {
		return err
	}
	direct, err := client.New(c.Kube, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	var devices *store.Store
	if c.PostgresDSN != "" {
		entries := c.DeviceCacheEntries
		switch {
		case entries == 0:
			entries = store.DefaultCacheEntries
		case entries < 0:
			entries = 0
		}
		if devices, err = store.Open(ctx, c.PostgresDSN, store.WithCacheEntries(entries)); err != nil {
			return err
		}
		defer devices.Close()
	}
	planeMetrics := server.NewMetrics()
	srv := server.New(server.Options{
		Classifier: classifier, Reader: informers, Secrets: direct, Status: direct, Store: devices,
		PlatformSlug: classifier.PlatformSlug, GatewayID: c.GatewayID, Heartbeat: c.Heartbeat, Poll: c.Poll, Log: c.Log,
		Metrics: planeMetrics,
	})
	if err := srv.WatchCluster(ctx, informers); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if devices != nil {
		rc := &retraction.Controller{Reader: informers, Writer: direct, Store: devices, Log: c.Log.WithName("retraction")}
		if err := rc.Watch(ctx, informers); err != nil {
			return err
		}
		go rc.Run(ctx)
		// A tenant's schema is prepared when the Tenant appears, not on its first segment.
		tenants, err := informers.GetInformer(ctx, &v1alpha1.Tenant{})
		if err != nil {
			return fmt.Errorf("watching tenants: %w", err)
		}
		if _, err := tenants.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
			if t, ok := obj.(*v1alpha1.Tenant); ok {
				go func() {
					if err := devices.EnsureTenant(ctx, t.Spec.Slug); err != nil && ctx.Err() == nil {
						c.Log.Error(err, "preparing the tenant's schema", "tenant", t.Spec.Slug)
					}
				}()
			}
		}}); err != nil {
			return fmt.Errorf("watching tenants: %w", err)
		}
	}
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil // stopped before it was ready
		}
		return errors.New("the informer cache did not sync")
	}

	reg := prometheus.NewRegistry()
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(metrics)
	reg.MustRegister(planeMetrics.Collectors()...)
	if devices != nil {
		reg.MustRegister(deviceCacheMetrics(devices)...)
	}
	gs := grpc.NewServer(
		// Thousands of workers hold a connection each, mostly idle: read
		// buffers are kept small (write buffers are shared by default).
		grpc.ReadBufferSize(8<<10),
		grpc.Creds(credentials.NewTLS(mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: src}))),
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor()),
	)
	pb.RegisterAgentGatewayServiceServer(gs, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	metrics.InitializeMetrics(gs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.AgentGatewayService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Listen, err)
	}
	var metricsSrv, pprofSrv *diag.Server
	if c.Metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if metricsSrv, err = diag.Serve(c.Metrics, mux, c.Log); err != nil {
			_ = lis.Close()
			return fmt.Errorf("metrics: %w", err)
		}
		defer metricsSrv.Stop()
	}
	if c.Pprof != "" {
		if pprofSrv, err = diag.Serve(c.Pprof, diag.Pprof(), c.Log); err != nil {
			_ = lis.Close()
			return fmt.Errorf("pprof: %w", err)
		}
		defer pprofSrv.Stop()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	c.Log.Info("gateway serving", "address", lis.Addr().String(), "gatewayID", c.GatewayID)
	if c.Ready != nil {
		c.Ready(lis.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-cacheErr:
	}
	hs.Shutdown()
	srv.Drain()
	// Control streams stay open for as long as workers live: give in-flight
	// calls a moment, then close what is left (workers reconnect elsewhere).
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// deviceCacheMetrics export the device cache's counters.
func deviceCacheMetrics(s *store.Store) []prometheus.Collector {
	counter := func(name, help string, v func(store.CacheStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(s.CacheStats())) })
	}
	return []prometheus.Collector{
		counter("sync_gateway_device_cache_hits_total", "Device updates resolved from the gateway's memory.",
			func(c store.CacheStats) int64 { return c.Hits }),
		counter("sync_gateway_device_cache_misses_total", "Device updates looked up in PostgreSQL.",
			func(c store.CacheStats) int64 { return c.Misses }),
		counter("sync_gateway_device_cache_unchanged_total", "Device rows found unchanged in memory, so not written.",
			func(c store.CacheStats) int64 { return c.Unchanged }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sync_gateway_device_cache_entries",
			Help: "Identifiers and device states in the device cache."}, func() float64 { return float64(s.CacheStats().Entries) }),
	}
}
