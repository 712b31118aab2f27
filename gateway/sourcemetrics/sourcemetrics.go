// Package sourcemetrics exports, from the gateway, the metrics an SRE alerts
// on for each IntegrationSource and SyncService, whichever worker (in the
// cluster or at a tenant's edge) runs it. Per source (labels tenant,
// namespace, name, type):
//
//   - state, read at scrape time from the informer cache and from a
//     snapshot of the device store that Run refreshes: the last run's end
//     and result, the last successful run, devices by state, a held
//     retraction, the poll interval, whether it is paused. Every replica
//     exports the same values; a source's series go with the source.
//   - counters of what this replica recorded: runs by result, their
//     duration, changes by kind, refused updates; Forget (called when the
//     source is deleted) removes them.
//
// Per SyncService: its phase, last heartbeat and the expiry of each edge
// certificate in its status (sync_edge_certificate_expiry_timestamp_seconds).
// No series carries a run id or anything else without bound.
package sourcemetrics

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/runstatus"
	"github.com/serviceradar/sync-operator/gateway/store"
)

// Labels of every per-source series, in order.
var sourceLabels = []string{"tenant", "namespace", "name", "type"}

// Results are the values of the result label, as status.lastSyncResult has them.
var Results = []v1alpha1.SyncResult{v1alpha1.SyncResultSuccess, v1alpha1.SyncResultPartial,
	v1alpha1.SyncResultFailed, v1alpha1.SyncResultHeldRetraction}

// Kinds of change (sync_source_changes_total's kind label).
const (
	KindCreated   = "created"
	KindUpdated   = "updated"
	KindUnchanged = "unchanged"
	KindMerged    = "merged"
	KindRetracted = "retracted"
)

// Device states (sync_source_devices's state label).
const (
	StateAvailable   = "available"
	StateUnavailable = "unavailable"
)

// DefaultRefresh is how often Run reads the device store's snapshot.
const DefaultRefresh = 30 * time.Second

// defaultPoll is spec.pollInterval's schema default.
const defaultPoll = 5 * time.Minute

// Source names one IntegrationSource in metric labels.
type Source struct {
	// Tenant is the tenant's slug; Type the source's spec.type.
	Tenant, Namespace, Name, Type string
}

func (s Source) values() []string { return []string{s.Tenant, s.Namespace, s.Name, s.Type} }

// Of is the Source of an IntegrationSource of tenant slug.
func Of(src *v1alpha1.IntegrationSource, slug string) Source {
	return Source{Tenant: slug, Namespace: src.Namespace, Name: src.Name, Type: string(src.Spec.Type)}
}

// StateStore reads the device store's state of a tenant's sources.
type StateStore interface {
	SourceStates(ctx context.Context, tenantSlug string) (map[string]store.SourceState, error)
}

// Options configure New.
type Options struct {
	// Reader is the informer cache of IntegrationSources, SyncServices and
	// Namespaces.
	Reader client.Reader
	// Store is the device store (nil: no store-backed series).
	Store StateStore
	// PlatformSlug is the platform tenant's slug, the tenant label of
	// platform SyncServices.
	PlatformSlug string
	// Refresh is how often Run reads the store (zero: DefaultRefresh).
	Refresh time.Duration
	Log     logr.Logger
	// TenantGone is called with a deleted Tenant's slug (nil: nothing).
	TenantGone func(slug string)
}

// Metrics are the per-source and per-SyncService metrics. Register Collectors.
type Metrics struct {
	o Options

	runs, changes, refused *prometheus.CounterVec
	duration               *prometheus.HistogramVec
	refreshes              *prometheus.CounterVec

	lastRun, lastSuccess, result, devices, held, poll, paused, created *prometheus.Desc
	ssPhase, ssHeartbeat, edgeExpiry                                   *prometheus.Desc

	mu sync.Mutex
	// states are the store's snapshot: tenant slug -> source uid -> state.
	states map[string]map[string]store.SourceState
}

// Refresh results (sync_source_state_refreshes_total's result label).
const (
	RefreshOK    = "ok"
	RefreshError = "error"
)

// New returns the metrics, unregistered.
func New(o Options) *Metrics {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(append([]string{}, sourceLabels...), extra...), nil)
	}
	ss := []string{"tenant", "namespace", "name"}
	m := &Metrics{o: o, states: map[string]map[string]store.SourceState{},
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_source_runs_total",
			Help: "Finished runs of the source this gateway replica recorded, by result (Success, Partial, Failed, HeldRetraction)."},
			append(append([]string{}, sourceLabels...), "result")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sync_source_run_duration_seconds",
			Help:    "Duration of the source's finished runs this replica recorded, from the first segment's arrival to the last one's.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}, sourceLabels),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_source_changes_total",
			Help: "Devices the source's runs recorded by this replica created, updated, left unchanged, merged or retracted."},
			append(append([]string{}, sourceLabels...), "kind")),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_source_refused_devices_total",
			Help: "Device updates of the source's runs that could never be stored (refused), as recorded by this replica."}, sourceLabels),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sync_source_state_refreshes_total",
			Help: "Reads of the device store's per-source state (devices by state, last success, held retractions) by result."}, []string{"result"}),
		lastRun: d("sync_source_last_run_timestamp_seconds", "When the source's last recorded run finished (Unix time), from its status."),
		lastSuccess: d("sync_source_last_success_timestamp_seconds",
			"When the source's last successful run finished (Unix time), from the device store; absent until one succeeded."),
		result: d("sync_source_last_run_result", "1 for the result of the source's last run (status.lastSyncResult), 0 for the others.", "result"),
		devices: d("sync_source_devices",
			"Devices the source has reported, by state: available (it still reports them) or unavailable (retracted or reported unavailable).", "state"),
		held: d("sync_source_retraction_held_devices",
			"Devices a held retraction of the source waits to retract (approve it with the approve-retraction annotation); 0 when none is held."),
		poll:    d("sync_source_poll_interval_seconds", "The source's spec.pollInterval."),
		paused:  d("sync_source_paused", "1 when the source is paused (spec.paused), else 0."),
		created: d("sync_source_created_timestamp_seconds", "When the IntegrationSource was created (Unix time)."),
		ssPhase: prometheus.NewDesc("sync_syncservice_phase", "1 for the SyncService's status.phase (Online, Offline, Degraded), 0 for the others.",
			append(append([]string{}, ss...), "phase"), nil),
		ssHeartbeat: prometheus.NewDesc("sync_syncservice_last_heartbeat_timestamp_seconds",
			"When the gateway last recorded a heartbeat of the SyncService's workers (Unix time).", ss, nil),
		edgeExpiry: prometheus.NewDesc("sync_edge_certificate_expiry_timestamp_seconds",
			"When an edge certificate of an OnPrem SyncService (status.edgeCertificates) expires (Unix time).",
			[]string{"tenant", "namespace", "syncservice", "serial"}, nil),
	}
	m.refreshes.WithLabelValues(RefreshOK)
	m.refreshes.WithLabelValues(RefreshError)
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m, m.runs, m.duration, m.changes, m.refused, m.refreshes}
}

// RunFinished counts a finished run of src.
func (m *Metrics) RunFinished(src Source, run store.RunRecord) {
	if m == nil {
		return
	}
	v := src.values()
	result, _ := runstatus.Result(run)
	m.runs.WithLabelValues(append(v, string(result))...).Inc()
	if d := run.Finished.Sub(run.Started); d >= 0 && !run.Started.IsZero() {
		m.duration.WithLabelValues(v...).Observe(d.Seconds())
	}
	for kind, n := range map[string]int{KindCreated: run.Created, KindUpdated: run.Updated, KindUnchanged: run.Unchanged,
		KindMerged: run.Merged, KindRetracted: run.Retracted} {
		m.changes.WithLabelValues(append(v, kind)...).Add(float64(n))
	}
	m.refused.WithLabelValues(v...).Add(float64(run.Refused))
}

// RetractionReleased counts the devices a released retraction retracted.
func (m *Metrics) RetractionReleased(src Source, retracted int) {
	if m == nil {
		return
	}
	m.changes.WithLabelValues(append(src.values(), KindRetracted)...).Add(float64(retracted))
}

// Forget removes the counters of a source that is gone.
func (m *Metrics) Forget(namespace, name string) {
	l := prometheus.Labels{"namespace": namespace, "name": name}
	m.runs.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.changes.DeletePartialMatch(l)
	m.refused.DeletePartialMatch(l)
}

// Watch forgets the counters of deleted IntegrationSources, and reports
// deleted Tenants to Options.TenantGone; call it before the cache starts.
func (m *Metrics) Watch(ctx context.Context, informers ctrlcache.Cache) error {
	inf, err := informers.GetInformer(ctx, &v1alpha1.IntegrationSource{})
	if err != nil {
		return err //nolint:wrapcheck // names the kind
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if src, ok := unwrap(obj).(*v1alpha1.IntegrationSource); ok {
			m.Forget(src.Namespace, src.Name)
		}
	}}); err != nil {
		return err //nolint:wrapcheck // the informer's own
	}
	if m.o.TenantGone == nil {
		return nil
	}
	tinf, err := informers.GetInformer(ctx, &v1alpha1.Tenant{})
	if err != nil {
		return err //nolint:wrapcheck // names the kind
	}
	_, err = tinf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := unwrap(obj).(*v1alpha1.Tenant); ok && t.Spec.Slug != "" {
			m.o.TenantGone(t.Spec.Slug)
		}
	}})
	return err //nolint:wrapcheck // the informer's own
}

func unwrap(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

// Run refreshes the store's snapshot every Options.Refresh until ctx ends.
func (m *Metrics) Run(ctx context.Context) {
	if m.o.Store == nil {
		return
	}
	t := time.NewTicker(m.o.Refresh)
	defer t.Stop()
	for {
		m.RefreshStates(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshStates reads the store's state of the sources of every tenant
// that has one in the cache. A tenant that cannot be read keeps its last
// snapshot.
func (m *Metrics) RefreshStates(ctx context.Context) {
	if m.o.Store == nil {
		return
	}
	tenants, err := m.namespaceTenants(ctx)
	if err != nil {
		m.refreshes.WithLabelValues(RefreshError).Inc()
		m.o.Log.Error(err, "listing namespaces for the source metrics")
		return
	}
	var srcs v1alpha1.IntegrationSourceList
	if err := m.o.Reader.List(ctx, &srcs); err != nil {
		m.refreshes.WithLabelValues(RefreshError).Inc()
		m.o.Log.Error(err, "listing sources for the source metrics")
		return
	}
	var tns v1alpha1.TenantList
	if err := m.o.Reader.List(ctx, &tns); err != nil {
		m.refreshes.WithLabelValues(RefreshError).Inc()
		m.o.Log.Error(err, "listing tenants for the source metrics")
		return
	}
	live := map[string]bool{}
	for _, tn := range tns.Items {
		if tn.DeletionTimestamp.IsZero() && tn.Spec.Slug != "" {
			live[tn.Spec.Slug] = true
		}
	}
	// Tenants that exist and have sources.
	want := map[string]bool{}
	for i := range srcs.Items {
		if slug := tenants[srcs.Items[i].Namespace]; live[slug] {
			want[slug] = true
		}
	}
	next := map[string]map[string]store.SourceState{}
	m.mu.Lock()
	for slug := range want {
		next[slug] = m.states[slug]
	}
	m.mu.Unlock()
	for slug := range want {
		rctx, cancel := context.WithTimeout(ctx, m.o.Refresh)
		st, err := m.o.Store.SourceStates(rctx, slug)
		cancel()
		if err != nil {
			m.refreshes.WithLabelValues(RefreshError).Inc()
			m.o.Log.Error(err, "reading the source states", "tenant", slug)
			continue
		}
		m.refreshes.WithLabelValues(RefreshOK).Inc()
		next[slug] = st
	}
	m.mu.Lock()
	m.states = next
	m.mu.Unlock()
}

// namespaceTenants maps each tenant namespace to its tenant's slug.
func (m *Metrics) namespaceTenants(ctx context.Context) (map[string]string, error) {
	var nss corev1.NamespaceList
	if err := m.o.Reader.List(ctx, &nss, client.HasLabels{v1alpha1.TenantLabel}); err != nil {
		return nil, err //nolint:wrapcheck // logged with context
	}
	out := make(map[string]string, len(nss.Items))
	for _, ns := range nss.Items {
		out[ns.Name] = ns.Labels[v1alpha1.TenantLabel]
	}
	return out, nil
}

// Describe sends the descriptors of the state series.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.lastRun, m.lastSuccess, m.result, m.devices, m.held, m.poll, m.paused, m.created,
		m.ssPhase, m.ssHeartbeat, m.edgeExpiry} {
		ch <- d
	}
}

// collectTimeout bounds the cache reads of one scrape.
const collectTimeout = 10 * time.Second

// Collect sends the state series of every source and SyncService in the
// cache, of tenant namespaces.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	tenants, err := m.namespaceTenants(ctx)
	if err != nil {
		m.o.Log.Error(err, "listing namespaces for the source metrics")
		return
	}
	m.mu.Lock()
	states := m.states
	m.mu.Unlock()
	var srcs v1alpha1.IntegrationSourceList
	if err := m.o.Reader.List(ctx, &srcs); err != nil {
		m.o.Log.Error(err, "listing sources for the source metrics")
	}
	for i := range srcs.Items {
		src := &srcs.Items[i]
		slug := tenants[src.Namespace]
		if slug == "" {
			continue // not in a tenant namespace: never served
		}
		m.collectSource(ch, src, Of(src, slug).values(), states[slug][string(src.UID)], states[slug] != nil)
	}
	var sss v1alpha1.SyncServiceList
	if err := m.o.Reader.List(ctx, &sss); err != nil {
		m.o.Log.Error(err, "listing sync services for the source metrics")
	}
	for i := range sss.Items {
		ss := &sss.Items[i]
		slug := tenants[ss.Namespace]
		if ss.Spec.Platform {
			slug = m.o.PlatformSlug
		}
		if slug == "" {
			continue
		}
		m.collectSyncService(ch, ss, slug)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (m *Metrics) collectSource(ch chan<- prometheus.Metric, src *v1alpha1.IntegrationSource, v []string, st store.SourceState, known bool) {
	poll := defaultPoll
	if src.Spec.PollInterval != nil && src.Spec.PollInterval.Duration > 0 {
		poll = src.Spec.PollInterval.Duration
	}
	gauge(ch, m.poll, poll.Seconds(), v...)
	paused := 0.0
	if src.Spec.Paused {
		paused = 1
	}
	gauge(ch, m.paused, paused, v...)
	gauge(ch, m.created, unix(src.CreationTimestamp.Time), v...)
	s := src.Status
	if s.LastRun != nil && !s.LastRun.EndTime.IsZero() {
		gauge(ch, m.lastRun, unix(s.LastRun.EndTime.Time), v...)
	} else if s.LastSyncTime != nil {
		gauge(ch, m.lastRun, unix(s.LastSyncTime.Time), v...)
	}
	if s.LastSyncResult != "" {
		for _, r := range Results {
			val := 0.0
			if r == s.LastSyncResult {
				val = 1
			}
			gauge(ch, m.result, val, append(v, string(r))...)
		}
	}
	if m.o.Store == nil || !known {
		return // not read yet: no value rather than a wrong one
	}
	gauge(ch, m.devices, float64(st.Available), append(v, StateAvailable)...)
	gauge(ch, m.devices, float64(st.Unavailable), append(v, StateUnavailable)...)
	gauge(ch, m.held, float64(st.HeldRetraction), v...)
	if !st.LastSuccess.IsZero() {
		gauge(ch, m.lastSuccess, unix(st.LastSuccess), v...)
	}
}

// Phases are the values of sync_syncservice_phase's phase label.
var Phases = []v1alpha1.Phase{v1alpha1.PhaseOnline, v1alpha1.PhaseOffline, v1alpha1.PhaseDegraded}

func (m *Metrics) collectSyncService(ch chan<- prometheus.Metric, ss *v1alpha1.SyncService, slug string) {
	v := []string{slug, ss.Namespace, ss.Name}
	if ss.Status.Phase != "" {
		for _, p := range Phases {
			val := 0.0
			if p == ss.Status.Phase {
				val = 1
			}
			gauge(ch, m.ssPhase, val, append(v, string(p))...)
		}
	}
	if hb := ss.Status.LastHeartbeatAt; hb != nil {
		gauge(ch, m.ssHeartbeat, unix(hb.Time), v...)
	}
	for _, c := range ss.Status.EdgeCertificates {
		gauge(ch, m.edgeExpiry, unix(c.NotAfter.Time), slug, ss.Namespace, ss.Name, c.Serial)
	}
}
