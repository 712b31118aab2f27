package server

import "github.com/prometheus/client_golang/prometheus"

// Ack results of sync_gateway_config_acks_total.
const (
	// AckCurrent is an ack of the version last pushed on its stream.
	AckCurrent = "current"
	// AckStale is an ack of any other version.
	AckStale = "stale"
)

// Outcomes of sync_gateway_swept_hosts_total.
const (
	SweepMatched = "matched"
	SweepUnknown = "unknown"
	SweepInvalid = "invalid"
)

// Metrics are the configuration plane's own metrics. Register Collectors
// with the process's registry.
type Metrics struct {
	// ControlStreams is the number of open, authorized ControlStreams.
	ControlStreams prometheus.Gauge
	// ConfigPushes counts configurations sent on ControlStreams.
	ConfigPushes prometheus.Counter
	// ConfigAcks counts ConfigAcks by result (AckCurrent, AckStale).
	ConfigAcks *prometheus.CounterVec
	// HeartbeatWrites counts heartbeats written to SyncService status.
	HeartbeatWrites prometheus.Counter
	// StatusStreams is the number of StreamStatus calls in flight.
	StatusStreams prometheus.Gauge
	// StatusChunks counts the chunks read from StreamStatus calls, the
	// refused ones included.
	StatusChunks prometheus.Counter
	// IngestHeldBytes is the memory charged to in-flight StreamStatus calls,
	// their reservations included (Admission.IngestBytes bounds it).
	IngestHeldBytes prometheus.Gauge
	// StatusWindows counts the windows of streamed calls (upstream's array
	// form) applied, each a segment.
	StatusWindows prometheus.Counter
	// AgentStatus counts agents' PushStatus calls acknowledged.
	AgentStatus prometheus.Counter
	// AgentServicesDropped counts the services agents streamed that the
	// gateway does not ingest (every service type but sweep): acknowledged
	// and dropped, never refused (a refusal makes an upstream agent
	// reconnect and send them again, forever).
	AgentServicesDropped prometheus.Counter
	// SweptHosts counts the hosts of agents' sweep results by outcome
	// (SweepMatched, SweepUnknown, SweepInvalid).
	SweptHosts *prometheus.CounterVec
	// Throttled counts calls answered ResourceExhausted by an Admission
	// limit, by limit (LimitStreams, LimitCallerStreams, LimitIngestMemory,
	// LimitCallerIngestMemory).
	Throttled *prometheus.CounterVec
	// IngestSegments counts the segments of sync workers' StreamStatus
	// calls by tenant and outcome (SegmentApplied, SegmentDuplicate,
	// SegmentRefused, SegmentFailed).
	IngestSegments *prometheus.CounterVec
	// IngestBytes counts the wire bytes of the chunks of StreamStatus calls
	// by tenant, refused calls included.
	IngestBytes *prometheus.CounterVec
	// ApplySeconds is how long PostgreSQL took to apply a segment, by tenant.
	ApplySeconds *prometheus.HistogramVec
}

// Outcomes of sync_gateway_ingest_segments_total.
const (
	// SegmentApplied was applied.
	SegmentApplied = "applied"
	// SegmentDuplicate had been applied before: acknowledged, nothing changed.
	SegmentDuplicate = "duplicate"
	// SegmentRefused can never be stored as sent (InvalidArgument,
	// FailedPrecondition): the worker's run fails.
	SegmentRefused = "refused"
	// SegmentFailed could not be applied now (a database error or the apply
	// timeout): the worker sends it again.
	SegmentFailed = "failed"
)

// SegmentOutcomes are the outcomes of sync_gateway_ingest_segments_total.
var SegmentOutcomes = []string{SegmentApplied, SegmentDuplicate, SegmentRefused, SegmentFailed}

// ForgetTenant removes the per-tenant series of a tenant that is gone.
func (m *Metrics) ForgetTenant(slug string) {
	l := prometheus.Labels{"tenant": slug}
	m.IngestSegments.DeletePartialMatch(l)
	m.IngestBytes.DeletePartialMatch(l)
	m.ApplySeconds.DeletePartialMatch(l)
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		ControlStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sync_gateway_control_streams",
			Help: "Open ControlStreams of sync workers."}),
		ConfigPushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_config_pushes_total",
			Help: "Configurations pushed on ControlStreams."}),
		ConfigAcks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_config_acks_total",
			Help: "ConfigAcks received: current acknowledges the version last pushed on its stream, stale any other."}, []string{"result"}),
		HeartbeatWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_heartbeat_writes_total",
			Help: "Heartbeats written to SyncService status."}),
		StatusStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sync_gateway_status_streams",
			Help: "StreamStatus calls in flight."}),
		StatusChunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_status_chunks_total",
			Help: "Chunks read from StreamStatus calls, refused calls included."}),
		IngestHeldBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sync_gateway_ingest_held_bytes",
			Help: "Memory charged to in-flight StreamStatus calls: a reservation for the chunk being received, plus the wire bytes and the estimated cost of decoding the chunks read."}),
		StatusWindows: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_status_windows_total",
			Help: "Windows of streamed StreamStatus calls (upstream's array form) applied, each a segment."}),
		AgentStatus: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_agent_status_total",
			Help: "PushStatus calls of agents acknowledged."}),
		AgentServicesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_agent_services_dropped_total",
			Help: "Services agents streamed that the gateway does not ingest (any service type but sweep): acknowledged and dropped."}),
		SweptHosts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_swept_hosts_total",
			Help: "Hosts of agents' sweep results: matched (a device of the agent's partition took the result), unknown (no device has the IP: ignored), invalid (not an IP address)."}, []string{"outcome"}),
		Throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_throttled_total",
			Help: "Calls answered ResourceExhausted (with a retry delay) by a server limit: streams, caller_streams, ingest_memory or caller_ingest_memory."}, []string{"limit"}),
		IngestSegments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_ingest_segments_total",
			Help: "Segments of sync workers' StreamStatus calls by tenant and outcome: applied, duplicate (applied before), refused (can never be stored as sent), failed (database error or apply timeout; sent again)."},
			[]string{"tenant", "outcome"}),
		IngestBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_ingest_bytes_total",
			Help: "Wire bytes of the chunks of StreamStatus calls by tenant, refused calls included."}, []string{"tenant"}),
		ApplySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sync_gateway_apply_duration_seconds",
			Help:    "Time PostgreSQL took to apply a segment (DIRE resolution and writes, in one transaction), by tenant.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"tenant"}),
	}
	for _, l := range []string{LimitStreams, LimitCallerStreams, LimitIngestMemory, LimitCallerIngestMemory} {
		m.Throttled.WithLabelValues(l)
	}
	for _, o := range []string{SweepMatched, SweepUnknown, SweepInvalid} {
		m.SweptHosts.WithLabelValues(o)
	}
	// Both results are exported from the start, at zero.
	m.ConfigAcks.WithLabelValues(AckCurrent)
	m.ConfigAcks.WithLabelValues(AckStale)
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.ControlStreams, m.ConfigPushes, m.ConfigAcks, m.HeartbeatWrites,
		m.StatusStreams, m.StatusChunks, m.IngestHeldBytes, m.Throttled, m.StatusWindows, m.AgentStatus, m.AgentServicesDropped, m.SweptHosts,
		m.IngestSegments, m.IngestBytes, m.ApplySeconds}
}
