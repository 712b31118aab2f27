package store

import "github.com/prometheus/client_golang/prometheus"

// retentionMetrics are a Retainer's metrics: table sizes as last measured
// (one series per tenant schema and table) and what was pruned.
type retentionMetrics struct {
	r           *Retainer
	rows, bytes *prometheus.Desc
	pruned      *prometheus.CounterVec
	rounds      *prometheus.CounterVec
}

func newRetentionMetrics(r *Retainer) *retentionMetrics {
	m := &retentionMetrics{
		r: r,
		rows: prometheus.NewDesc("sync_gateway_store_table_rows",
			"PostgreSQL's estimate of the live rows of a table of a tenant schema, as last measured.", []string{"schema", "table"}, nil),
		bytes: prometheus.NewDesc("sync_gateway_store_table_bytes",
			"Size on disk of a table of a tenant schema with its indexes and TOAST, as last measured.", []string{"schema", "table"}, nil),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_retention_pruned_rows_total",
			Help: "Rows that retention removed, by table (sync_runs, applied_segments, merge_audit)."}, []string{"table"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_gateway_retention_rounds_total",
			Help: "Retention rounds by result: pruned, skipped (another replica was pruning) or failed."}, []string{"result"}),
	}
	for _, t := range []string{TableRuns, TableSegments, TableAudit} {
		m.pruned.WithLabelValues(t)
	}
	for _, res := range []string{"pruned", "skipped", "failed"} {
		m.rounds.WithLabelValues(res)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *retentionMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.rows
	ch <- m.bytes
	m.pruned.Describe(ch)
	m.rounds.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *retentionMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, t := range m.r.Sizes() {
		ch <- prometheus.MustNewConstMetric(m.rows, prometheus.GaugeValue, float64(t.Rows), t.Schema, t.Table)
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(t.Bytes), t.Schema, t.Table)
	}
	m.pruned.Collect(ch)
	m.rounds.Collect(ch)
}

// Collectors are the Retainer's metrics, for the process's registry:
// sync_gateway_store_table_rows and sync_gateway_store_table_bytes
// {schema, table}, sync_gateway_retention_pruned_rows_total{table} and
// sync_gateway_retention_rounds_total{result}.
func (r *Retainer) Collectors() []prometheus.Collector { return []prometheus.Collector{r.m} }
