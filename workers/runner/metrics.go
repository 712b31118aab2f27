package runner

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's per-source metrics.
type Metrics struct {
	runs           *prometheus.HistogramVec
	devices        *prometheus.CounterVec
	lastRunDevices *prometheus.GaugeVec
	pages          *prometheus.CounterVec
	errors         *prometheus.CounterVec
	lastSuccess    *prometheus.GaugeVec
	active         prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sync_run_duration_seconds",
			Help: "Duration of sync runs by source and result.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 14)},
			[]string{"source", "type", "result"}),
		devices: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_devices_total",
			Help: "Devices sent to the gateway, by source."}, []string{"source", "type"}),
		lastRunDevices: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sync_last_run_devices",
			Help: "Devices the source's last run sent to the gateway."}, []string{"source", "type"}),
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_pages_total",
			Help: "Pages fetched from the inventory, by source."}, []string{"source", "type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_errors_total",
			Help: "Failed requests and runs, by source and kind."}, []string{"source", "type", "kind"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sync_last_success_timestamp_seconds",
			Help: "When the source's last successful run finished, a full pass or one over the changes (Unix time)."}, []string{"source", "type"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sync_sources_active",
			Help: "Sources with a running sync loop (paused and unrunnable ones excluded)."}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.devices, m.lastRunDevices, m.pages, m.errors, m.lastSuccess, m.active)
	}
	return m
}

// forget drops the series of a source that is gone.
func (m *Metrics) forget(key string) {
	l := prometheus.Labels{"source": key}
	m.runs.DeletePartialMatch(l)
	m.devices.DeletePartialMatch(l)
	m.lastRunDevices.DeletePartialMatch(l)
	m.pages.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
}

// observer adapts the metrics of one source to integration.Observer.
type observer struct {
	m         *Metrics
	key, kind string
}

func (o observer) Page(devices int, _ time.Duration) {
	o.m.pages.WithLabelValues(o.key, o.kind).Inc()
}

func (o observer) Failure(kind string) {
	o.m.errors.WithLabelValues(o.key, o.kind, kind).Inc()
}
