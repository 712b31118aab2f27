package app

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/events"
	"github.com/serviceradar/sync-operator/gateway/retraction"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/sourcemetrics"
	"github.com/serviceradar/sync-operator/gateway/store"
)

// The gateway records events (events.k8s.io, reporting controller
// sync-gateway) on the IntegrationSources and SyncServices it serves.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// observation is what the gateway tells operators besides status: its
// events and the per-source metrics.
type observation struct {
	events  *events.Recorder
	sources *sourcemetrics.Metrics
	// dropped counts the events the rate limit dropped.
	dropped prometheus.Counter
	reader  client.Reader
	store   *store.Store
}

// observe starts the gateway's events broadcaster and builds its
// per-source metrics, which forget deleted sources and tenants (plane's
// per-tenant series among them).
func (c Config) observe(ctx context.Context, cs kubernetes.Interface, scheme *runtime.Scheme, informers ctrlcache.Cache,
	devices *store.Store, platformSlug string, plane *server.Metrics,
) (*observation, error) {
	o := &observation{reader: informers, store: devices,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sync_gateway_events_dropped_total",
			Help: "Events the gateway did not record because their object and reason exceeded the events rate limit."})}
	rec, err := events.New(ctx, cs, scheme, events.Options{Dropped: o.dropped.Inc})
	if err != nil {
		return nil, err //nolint:wrapcheck // says what failed
	}
	o.events = rec
	opts := sourcemetrics.Options{Reader: informers, PlatformSlug: platformSlug, Log: c.Log.WithName("sourcemetrics"), TenantGone: plane.ForgetTenant}
	if devices != nil {
		opts.Store = devices
	}
	o.sources = sourcemetrics.New(opts)
	if err := o.sources.Watch(ctx, informers); err != nil {
		return nil, fmt.Errorf("watching sources for their metrics: %w", err)
	}
	return o, nil
}

// collectors are the metrics to register.
func (o *observation) collectors() []prometheus.Collector {
	return append(o.sources.Collectors(), o.dropped)
}

// released wraps the recorder of released retractions: each release also
// records a Normal event on its source and counts the devices it retracted.
func (o *observation) released(next retraction.Recorder) retraction.Recorder {
	return &releaseRecorder{next: next, o: o}
}

type releaseRecorder struct {
	next retraction.Recorder
	o    *observation
}

// releasedRuns is how many of a source's newest runs are searched for the
// released one.
const releasedRuns = 32

// Record records the release on status, then its event and metrics.
func (r *releaseRecorder) Record(ctx context.Context, key types.NamespacedName, tenantSlug, sourceUID string, available int) error {
	err := r.next.Record(ctx, key, tenantSlug, sourceUID, available)
	src := &v1alpha1.IntegrationSource{}
	if gerr := r.o.reader.Get(ctx, key, src); gerr != nil || string(src.UID) != sourceUID || r.o.store == nil {
		return err //nolint:wrapcheck // the status writer's, which names the source
	}
	runs, rerr := r.o.store.Runs(ctx, tenantSlug, sourceUID, releasedRuns)
	if rerr != nil {
		return err //nolint:wrapcheck // as above; the event is best effort
	}
	var last *store.RunRecord
	for i := range runs {
		h := runs[i].Held
		if h != nil && h.State == store.ReleasedState && (last == nil || h.Decided.After(last.Held.Decided)) {
			last = &runs[i]
		}
	}
	if last != nil {
		r.o.events.RetractionReleased(src, last.RunID, last.Retracted, available)
		r.o.sources.RetractionReleased(sourcemetrics.Of(src, tenantSlug), last.Retracted)
	}
	return err //nolint:wrapcheck // as above
}
