// Command gateway is the agent-gateway: the mTLS gRPC service that serves
// sync workers their configuration and records their heartbeats. This file
// only parses flags.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/version"
)

func main() {
	host, _ := os.Hostname()
	var c app.Config
	flag.StringVar(&c.Listen, "listen", ":50052", "gRPC listen address")
	flag.StringVar(&c.Metrics, "metrics-bind-address", ":9090", "Prometheus metrics address (empty disables it)")
	flag.StringVar(&c.Pprof, "pprof-bind-address", "", "net/http/pprof address for diagnostics, e.g. 127.0.0.1:6060 (empty disables it)")
	flag.StringVar(&c.CertFile, "cert-file", "", "PEM certificate (with intermediates) of the gateway, when not using the Workload API")
	flag.StringVar(&c.KeyFile, "key-file", "", "PEM private key of the gateway")
	flag.StringVar(&c.CAFile, "ca-file", "", "PEM platform root CA, trusted for SVIDs and edge certificates")
	flag.StringVar(&c.WorkloadAPIAddr, "workload-api-addr", "", "SPIFFE Workload API address (unix://...); replaces the PEM files")
	flag.StringVar(&c.SPIFFEID, "spiffe-id", "", "the gateway's SPIFFE ID, when several SVIDs are offered")
	flag.StringVar(&c.EdgeCAFile, "edge-ca-file", "", "platform root CA for edge certificates, with the Workload API")
	flag.StringVar(&c.TrustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain")
	flag.StringVar(&c.PlatformSlug, "platform-slug", identity.DefaultPlatformSlug, "reserved slug of the platform tenant")
	flag.StringVar(&c.GatewayID, "gateway-id", host, "this replica's id in answers")
	flag.DurationVar(&c.Heartbeat, "heartbeat-interval", server.DefaultHeartbeat, "heartbeat interval handed to workers")
	flag.DurationVar(&c.Poll, "config-poll-interval", server.DefaultPoll, "config poll interval handed to workers")
	flag.IntVar(&c.DeviceCacheEntries, "device-cache-entries", store.DefaultCacheEntries,
		"bound of the in-memory device cache, in identifiers and device states (about 60 bytes each; 0 disables it)")
	flag.StringVar(&c.PostgresDSN, "postgres-dsn", os.Getenv("SYNC_POSTGRES_DSN"), "PostgreSQL DSN of the device store (default $SYNC_POSTGRES_DSN; empty refuses device updates)")
	flag.IntVar(&c.PostgresMaxConns, "postgres-max-conns", store.DefaultMaxConns,
		"connections to PostgreSQL the gateway opens at most (a pool_max_conns in the DSN wins)")
	flag.DurationVar(&c.PostgresStatementTimeout, "postgres-statement-timeout", 0,
		"PostgreSQL cancels a statement of the gateway that runs longer (0: the server's setting; a statement_timeout in the DSN wins; schema migrations run without one)")
	flag.DurationVar(&c.MaxConnectionAge, "max-connection-age", app.DefaultMaxConnectionAge,
		"end client connections after this age (GOAWAY), so that none outlives its certificates for long; negative keeps them")
	flag.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", app.DefaultMaxConnectionAgeGrace,
		"time the calls in flight get to finish after a connection reached its age")
	k := server.DefaultKeepalive
	flag.DurationVar(&c.Keepalive.MinPingInterval, "keepalive-min-ping-interval", k.MinPingInterval,
		"shortest interval between client pings accepted, also on idle connections (ServiceRadar agents ping every 30s); faster pingers get GOAWAY too_many_pings")
	flag.DurationVar(&c.Keepalive.Time, "keepalive-time", k.Time, "ping a client after its connection was idle this long")
	flag.DurationVar(&c.Keepalive.Timeout, "keepalive-timeout", k.Timeout, "close a connection whose client does not acknowledge a ping within this")
	flag.StringVar(&c.UpstreamTenant, "upstream-tenant", "",
		"map certificates in ServiceRadar's own format (no tenant label) issued by --upstream-ca-file to this tenant slug, for single-deployment sites (empty refuses them)")
	flag.StringVar(&c.UpstreamCAFile, "upstream-ca-file", "", "PEM CA(s) that issue upstream-format certificates, with --upstream-tenant")
	flag.StringVar(&c.UpstreamTrustDomain, "upstream-trust-domain", "", "SPIFFE trust domain of upstream-format SVIDs (default: --trust-domain)")
	d := server.DefaultAdmission
	flag.IntVar(&c.Admission.StatusStreams, "max-status-streams", d.StatusStreams, "StreamStatus calls in flight on this replica")
	flag.IntVar(&c.Admission.StatusStreamsPerCaller, "max-status-streams-per-caller", d.StatusStreamsPerCaller,
		"StreamStatus calls in flight of one certificate identity")
	flag.IntVar(&c.Admission.ControlStreams, "max-control-streams", d.ControlStreams, "open ControlStreams on this replica")
	flag.IntVar(&c.Admission.ControlStreamsPerCaller, "max-control-streams-per-caller", d.ControlStreamsPerCaller,
		"open ControlStreams of one certificate identity")
	flag.DurationVar(&c.Admission.CallTimeout, "status-call-timeout", d.CallTimeout, "longest time a StreamStatus call may take to send its chunks")
	flag.DurationVar(&c.Admission.ApplyTimeout, "status-apply-timeout", d.ApplyTimeout,
		"longest time applying one StreamStatus segment (its database transaction) may take, after its chunks were read")
	flag.Int64Var(&c.Admission.IngestBytes, "ingest-memory-bytes", d.IngestBytes,
		"memory in-flight StreamStatus calls may hold (a reservation of --max-message-bytes per call, plus wire bytes and the estimated cost of decoding them); calls beyond it are answered ResourceExhausted with a retry delay")
	flag.Int64Var(&c.Admission.IngestBytesPerCaller, "ingest-memory-bytes-per-caller", 0,
		"what the StreamStatus calls of one certificate identity may hold of --ingest-memory-bytes (0: half of it)")
	flag.IntVar(&c.Admission.MaxMessageBytes, "max-message-bytes", d.MaxMessageBytes,
		"largest message the gateway receives (workers send chunks of at most 3 MiB); each StreamStatus call reserves it before it reads")
	rt := store.DefaultRetention
	flag.DurationVar(&c.Retention.Interval, "retention-interval", rt.Interval,
		"how often the device store's tables are measured and, by one replica at a time, pruned (0 disables both)")
	flag.IntVar(&c.Retention.BatchRows, "retention-batch-rows", rt.BatchRows, "rows one pruning statement removes, each in a short transaction of its own")
	flag.DurationVar(&c.Retention.RunsAge, "retention-runs-age", rt.RunsAge,
		"remove the sync_runs rows of runs that ended longer ago (0 keeps them all); runs still open are kept")
	flag.IntVar(&c.Retention.RunsKeep, "retention-runs-keep", rt.RunsKeep, "keep each source's newest runs however old (at least 1)")
	flag.DurationVar(&c.Retention.SegmentsAge, "retention-segments-age", rt.SegmentsAge,
		"remove the applied_segments rows of runs that ended longer ago (0 keeps them all; at least 1h, at most --retention-runs-age): a segment sent again after that is applied again")
	flag.IntVar(&c.Retention.SegmentsKeepRuns, "retention-segments-keep-runs", rt.SegmentsKeepRuns,
		"keep the applied_segments rows of each source's newest runs however old (1 to --retention-runs-keep)")
	flag.DurationVar(&c.Retention.AuditAge, "retention-audit-age", rt.AuditAge, "remove merge_audit rows older than this (0 keeps them all)")
	flag.IntVar(&c.Retention.AuditKeep, "retention-audit-keep", rt.AuditKeep, "keep each tenant's newest merge_audit rows however old")
	flag.DurationVar(&c.ShutdownGrace, "shutdown-grace", app.DefaultShutdownGrace,
		"on SIGTERM, how long the calls in flight (StreamStatus segments) get to finish once the gateway refuses new connections and has ended its ControlStreams; keep it below the pod's terminationGracePeriodSeconds")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	gcPercent := flag.Int("gc-percent", diag.DefaultGCPercent, "garbage collector target percent when GOGC is not set (0: the Go default of 100)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	diag.SetGCPercent(*gcPercent)
	if *showVersion {
		fmt.Println(version.String("gateway"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	c.Log = ctrl.Log.WithName("gateway")
	c.Kube = ctrl.GetConfigOrDie()
	if err := app.Run(ctrl.SetupSignalHandler(), c); err != nil {
		c.Log.Error(err, "gateway stopped")
		os.Exit(1)
	}
}
