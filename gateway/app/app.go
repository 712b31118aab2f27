// Package app wires the agent-gateway process: identity (PEM files or the
// SPIFFE Workload API), the informer cache of CRs (never of Secrets), the
// config-plane server over mTLS, the gRPC health and reflection services and
// Prometheus metrics (per-RPC counts and latencies, control streams, config
// pushes and acks, heartbeat writes).
package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/retraction"
	"github.com/serviceradar/sync-operator/gateway/runstatus"
	"github.com/serviceradar/sync-operator/gateway/schemas"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/gateway/syncnow"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
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
	// PostgresMaxConns bounds the store's connection pool (0 takes
	// store.DefaultMaxConns); PostgresStatementTimeout is the
	// statement_timeout of its connections (0 keeps the server's). A DSN
	// that sets pool_max_conns or statement_timeout wins over them.
	PostgresMaxConns         int
	PostgresStatementTimeout time.Duration
	// DeviceCacheEntries bounds the in-memory device cache (identifiers and
	// device states), as store.WithCacheEntries: 0 (or a negative number)
	// disables it, as --device-cache-entries=0 and the chart's
	// gateway.deviceCacheEntries: 0 do. cmd/gateway's default is
	// store.DefaultCacheEntries.
	DeviceCacheEntries int
	// MaxConnectionAge ends a client connection after it (with a GOAWAY, then
	// MaxConnectionAgeGrace for the calls in flight), so that no connection
	// outlives the certificates it was opened with for long; zero takes the
	// defaults, a negative age keeps connections forever.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// Keepalive is which client pings the gateway accepts and how it pings
	// idle clients (zero fields take server.DefaultKeepalive).
	Keepalive server.Keepalive
	// UpstreamTenant, when set, maps certificates in ServiceRadar's own
	// format (no tenant label: CN <component>.<partition>.serviceradar,
	// SPIFFE /<type>/<partition>/<component>) issued by the CAs of
	// UpstreamCAFile to this one tenant, for single-deployment sites. Empty
	// (the default) refuses them. UpstreamTrustDomain is their SPIFFE
	// trust domain (default TrustDomain).
	UpstreamTenant, UpstreamCAFile, UpstreamTrustDomain string
	// Admission bounds the calls in flight (zero fields take server.DefaultAdmission).
	Admission server.Admission
	// Retention bounds the device store's run records, applied-segment
	// records and merge audit (store.Retention; the gateway's flags default
	// to store.DefaultRetention). A zero Interval disables it.
	Retention store.Retention
	// ShutdownGrace is how long the calls in flight get to finish once the
	// gateway is told to stop (SIGTERM) and has stopped accepting
	// connections and ended its ControlStreams; what is left then is cut
	// off. Zero takes DefaultShutdownGrace. Keep it below the pod's
	// terminationGracePeriodSeconds.
	ShutdownGrace time.Duration
	Log           logr.Logger
	// Ready is called with the bound gRPC address once the gateway serves.
	Ready func(addr string)
}

func (c Config) source(ctx context.Context, td spiffeid.TrustDomain) (mtls.Source, func(), error) {
	if c.WorkloadAPIAddr == "" {
		src, err := mtls.NewFileSource(c.CertFile, c.KeyFile, c.CAFile, td)
		return src, func() {}, err
	}
	var id spiffeid.ID
	if c.SPIFFEID != "" {
		parsed, err := spiffeid.FromString(c.SPIFFEID)
		if err != nil {
			return nil, nil, fmt.Errorf("--spiffe-id: %w", err)
		}
		id = parsed
	}
	var edge *mtls.FileRoots
	if c.EdgeCAFile != "" {
		var err error
		if edge, err = mtls.NewFileRoots(c.EdgeCAFile); err != nil {
			return nil, nil, err
		}
	}
	src, err := mtls.DialWorkloadAPI(ctx, c.WorkloadAPIAddr, id, edge)
	if err != nil {
		return nil, nil, err
	}
	return src, func() { _ = src.Close() }, nil
}

// upstream sets the classifier's mapping of upstream-format identities and
// returns the CAs that issue them; none when UpstreamTenant is empty.
func (c Config) upstream(classifier *identity.Classifier) ([]*x509.Certificate, error) {
	if c.UpstreamTenant == "" {
		if c.UpstreamCAFile != "" {
			return nil, errors.New("--upstream-ca-file needs --upstream-tenant")
		}
		return nil, nil
	}
	if c.UpstreamCAFile == "" {
		return nil, errors.New("--upstream-tenant needs --upstream-ca-file: the CA that issues the upstream certificates")
	}
	mapped, err := classifier.WithUpstream(c.UpstreamTenant, c.UpstreamTrustDomain)
	if err != nil {
		return nil, fmt.Errorf("--upstream-tenant: %w", err)
	}
	raw, err := os.ReadFile(c.UpstreamCAFile)
	if err != nil {
		return nil, fmt.Errorf("reading --upstream-ca-file: %w", err)
	}
	var cas []*x509.Certificate
	for block, rest := pem.Decode(raw); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing --upstream-ca-file %s: %w", c.UpstreamCAFile, err)
		}
		cas = append(cas, ca)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("--upstream-ca-file %s holds no certificate", c.UpstreamCAFile)
	}
	*classifier = mapped
	c.Log.Info("mapping upstream-format identities to one tenant", "tenant", c.UpstreamTenant,
		"trustDomain", mapped.Upstream.TrustDomain.String(), "cas", len(cas))
	return cas, nil
}

// Defaults of Config.MaxConnectionAge and MaxConnectionAgeGrace: half the
// lifetime of the shortest certificate issued to callers (worker SVIDs, one
// hour, from the operator and from SPIRE alike), and a grace longer than a
// StreamStatus call may take (server.DefaultAdmission's CallTimeout to read
// it and ApplyTimeout to apply it), so that segments in flight finish and
// workers reconnect on a new connection.
var (
	DefaultMaxConnectionAge      = ca.DefaultSVIDLifetime / 2
	DefaultMaxConnectionAgeGrace = server.DefaultAdmission.CallTimeout + server.DefaultAdmission.ApplyTimeout + time.Minute
)

// streamWindow is the gateway's HTTP/2 flow-control window of a stream:
// what a caller may send on a stream before the gateway reads it (64 KiB,
// the HTTP/2 default). A message is read in one piece: reading it opens
// the window to its size.
const streamWindow = 64 << 10

// maxStreamsPerConnection bounds the streams open at once on one
// connection, which carries one certificate identity: its StreamStatus
// calls and ControlStreams, and as many short calls (Hello, GetConfig,
// PushStatus, health checks) besides. gRPC clients wait for a stream
// beyond it.
func maxStreamsPerConnection(a server.Admission) uint32 {
	return uint32(2 * (a.StatusStreamsPerCaller + a.ControlStreamsPerCaller)) //nolint:gosec // small positive numbers
}

// keepalive are the server's connection lifetimes and its own pings.
func (c Config) keepalive() keepalive.ServerParameters {
	k := c.Keepalive.WithDefaults()
	age, grace := c.MaxConnectionAge, c.MaxConnectionAgeGrace
	if age == 0 {
		age = DefaultMaxConnectionAge
	}
	if grace <= 0 {
		grace = DefaultMaxConnectionAgeGrace
	}
	if age < 0 {
		return k.ServerParameters(keepalive.ServerParameters{}) // gRPC's infinite age
	}
	return k.ServerParameters(keepalive.ServerParameters{MaxConnectionAge: age, MaxConnectionAgeGrace: grace})
}

// newScheme knows the kinds the gateway reads.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	return scheme, nil
}

// newInformers is the gateway's cache: CRs and namespaces, never Secrets.
// The catalog watches each Secret that sources reference by itself, by name,
// which is all the gateway's RBAC allows (the manager grants those per
// namespace).
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
	upstreamCAs, err := c.upstream(&classifier)
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
	secrets, err := kubernetes.NewForConfig(c.Kube)
	if err != nil {
		return fmt.Errorf("creating the Secrets client: %w", err)
	}
	var devices *store.Store
	if c.PostgresDSN != "" {
		if devices, err = store.Open(ctx, c.PostgresDSN, store.WithCacheEntries(c.DeviceCacheEntries),
			store.WithMaxConns(c.PostgresMaxConns), store.WithStatementTimeout(c.PostgresStatementTimeout)); err != nil {
			return err
		}
		defer devices.Close()
	}
	var retainer *store.Retainer
	if devices != nil {
		if retainer, err = store.NewRetainer(devices, c.Retention, c.Log.WithName("retention")); err != nil {
			return err
		}
	}
	planeMetrics := server.NewMetrics()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Events and per-source metrics (observe.go). Events are recorded until
	// Run returns, so that runs that finish while draining have theirs.
	obsCtx, obsCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer obsCancel()
	obs, err := c.observe(obsCtx, secrets, scheme, informers, devices, classifier.PlatformSlug, planeMetrics)
	if err != nil {
		return err
	}
	srv := server.New(server.Options{
		Classifier: classifier, Reader: informers, Secrets: secrets.CoreV1(), Status: direct, Store: devices,
		PlatformSlug: classifier.PlatformSlug, GatewayID: c.GatewayID, Heartbeat: c.Heartbeat, Poll: c.Poll, Log: c.Log,
		Metrics: planeMetrics, Admission: c.Admission, Events: obs.events, Sources: obs.sources,
	})
	if err := srv.WatchCluster(ctx, informers); err != nil {
		return err
	}
	// Sync now: the replica holding a worker's ControlStream delivers the
	// sync-requested-at annotations of its sources.
	sn := &syncnow.Controller{Reader: informers, Live: direct, Sender: srv, TrustDomain: classifier.TrustDomain,
		PlatformSlug: classifier.PlatformSlug, Log: c.Log.WithName("syncnow")}
	if err := sn.Watch(ctx, informers); err != nil {
		return err
	}
	go sn.Run(ctx)
	if devices != nil {
		rc := &retraction.Controller{Reader: informers, Writer: direct, Store: devices, Log: c.Log.WithName("retraction"),
			Runs: obs.released(&runstatus.Writer{Status: direct, Reader: informers, Store: devices, FieldOwner: server.FieldOwner})}
		if err := rc.Watch(ctx, informers); err != nil {
			return err
		}
		go rc.Run(ctx)
		// A tenant's schema is prepared when the Tenant appears, not on its
		// first segment, forgotten when it is deleted, and dropped first
		// when its deletionPolicy is Drop.
		sc := &schemas.Controller{Reader: informers, Writer: direct, Store: devices, Log: c.Log.WithName("schemas")}
		if err := sc.Watch(ctx, informers); err != nil {
			return err
		}
		go sc.Run(ctx)
		// One replica at a time prunes; every replica measures the tables.
		go retainer.Run(ctx)
	}
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil // stopped before it was ready
		}
		return errors.New("the informer cache did not sync")
	}
	go obs.sources.Run(ctx)

	reg := prometheus.NewRegistry()
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(metrics)
	reg.MustRegister(planeMetrics.Collectors()...)
	reg.MustRegister(obs.collectors()...)
	if devices != nil {
		reg.MustRegister(deviceCacheMetrics(devices)...)
		reg.MustRegister(retainer.Collectors()...)
	}
	admission := c.Admission.WithDefaults()
	gs := grpc.NewServer(
		// Thousands of workers hold a connection each, mostly idle: read
		// buffers are kept small (write buffers are shared by default).
		grpc.ReadBufferSize(8<<10),
		grpc.KeepaliveParams(c.keepalive()),
		// Idle agents ping every 30 s, also without a call open.
		grpc.KeepaliveEnforcementPolicy(c.Keepalive.WithDefaults().EnforcementPolicy()),
		// The largest message received is the one StreamStatus reserves.
		grpc.MaxRecvMsgSize(admission.MaxMessageBytes),
		// Fixed flow-control windows (which turn off gRPC's BDP estimation,
		// that grows them to 16 MiB a stream at a caller's pace): what a
		// caller has sent and the gateway not yet asked for stays within
		// streamWindow a stream (reading a message opens the window to the
		// message's size), and a connection carries at most
		// maxStreamsPerConnection streams, so that callers the gateway
		// refuses or throttles before reading cannot park memory in its
		// buffers. gRPC acknowledges connection-level data on receipt: the
		// connection window does not hold memory.
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(8<<20),
		grpc.MaxConcurrentStreams(maxStreamsPerConnection(admission)),
		grpc.Creds(credentials.NewTLS(mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: src, UpstreamCAs: upstreamCAs}))),
		// StreamStatus's read deadline ends a waiting Recv through it.
		grpc.InTapHandle(server.InTapHandle),
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
	c.drain(gs, srv)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// DefaultShutdownGrace is Config.ShutdownGrace's default: within
// Kubernetes' default terminationGracePeriodSeconds of 30 s, with time left
// for the process to exit before the kubelet kills it.
const DefaultShutdownGrace = 25 * time.Second

// drain stops the gRPC server within c.ShutdownGrace. GracefulStop closes
// the listener at once (new connections are refused, which also fails the
// pod's TCP readiness probe, so the Service stops routing here), sends every
// connection a GOAWAY (no new call on it; clients open their next call
// elsewhere) and waits for the calls in flight. ControlStreams would never
// end by themselves: srv.Drain ends them with Unavailable, so workers and
// agents reconnect to another replica at once. StreamStatus calls in flight
// finish and their segments are applied, until the grace runs out; then
// what is left is cut off: a worker's unfinished segment commits nothing and
// is sent again to another replica, an upstream client's whole-run call
// keeps the windows it committed (sent again, they change nothing).
func (c Config) drain(gs *grpc.Server, srv *server.Server) {
	grace := c.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	c.Log.Info("draining: refusing new connections, ending control streams, finishing the calls in flight", "grace", grace.String())
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	srv.Drain()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-stopped:
		c.Log.Info("drained: every call finished")
	case <-timer.C:
		c.Log.Info("the shutdown grace ran out: ending the calls still in flight", "grace", grace.String())
		gs.Stop()
		<-stopped
	}
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
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sync_gateway_device_cache_capacity",
			Help: "Identifiers and device states the device cache may hold (--device-cache-entries; 0: disabled)."},
			func() float64 { return float64(s.CacheStats().Budget) }),
	}
}
