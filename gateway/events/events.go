// Package events records the gateway's Kubernetes events (events.k8s.io/v1,
// reporting controller "sync-gateway"): a Warning on IntegrationSources
// whose runs fail, are partial or have their retraction held, a Normal one
// on runs that changed devices and on released retractions, and a Warning
// on SyncServices whose edge certificate the gateway refused. Each object
// and reason has a token bucket of its own, so that a source failing on
// every poll, or an edge worker retrying a revoked certificate, cannot flood
// the API server.
//
// Notes carry counts, run ids and the rule that applied, never a
// credential, an endpoint, a device or another tenant's name: a source's
// error as its worker reported it stays on its status (where the worker's
// message already lives), not in an event.
package events

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/lru"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/runstatus"
	"github.com/serviceradar/sync-operator/gateway/store"
)

// Component is the gateway's reporting controller on its events.
const Component = "sync-gateway"

// Reasons of the gateway's events.
const (
	// ReasonRunFailed (Warning): a run delivered no device and ended with an error.
	ReasonRunFailed = "RunFailed"
	// ReasonRunPartial (Warning): a run delivered devices and ended with an
	// error, or some of its updates were refused.
	ReasonRunPartial = "RunPartial"
	// ReasonRetractionHeld (Warning): the retraction brake held a full run's retraction.
	ReasonRetractionHeld = "RetractionHeld"
	// ReasonRunCompleted (Normal): a successful run created, updated,
	// merged or retracted devices. Runs that changed nothing record no event.
	ReasonRunCompleted = "RunCompleted"
	// ReasonRetractionReleased (Normal): an approval released a held retraction.
	ReasonRetractionReleased = "RetractionReleased"
	// ReasonCertificateRefused (Warning, on a SyncService): an edge
	// certificate naming the SyncService was refused.
	ReasonCertificateRefused = "CertificateRefused"
)

// Actions of the gateway's events.
const (
	ActionSync      = "Sync"
	ActionRetract   = "Retract"
	ActionAuthorize = "Authorize"
)

// Limit is the rate of one object's events of one reason: Burst at once,
// then one every Every.
type Limit struct {
	Burst int
	Every time.Duration
}

// DefaultLimit lets a source report its first runs in full and then at most
// one event of a reason every five minutes (the spam filter of client-go's
// core/v1 event correlator has the same rate).
var DefaultLimit = Limit{Burst: 10, Every: 5 * time.Minute}

// limiterEntries bounds the token buckets kept (least recently used go first).
const limiterEntries = 4096

// Recorder records the gateway's events. Its methods do nothing on a nil
// Recorder.
type Recorder struct {
	rec   events.EventRecorder
	limit Limit
	mu    sync.Mutex
	lim   *lru.Cache
	// dropped is called for each event the rate limit drops.
	dropped func()
}

// Options configure New.
type Options struct {
	// Limit is each object's rate per reason (zero: DefaultLimit).
	Limit Limit
	// Dropped is called for each event the rate limit drops (nil: nothing).
	Dropped func()
}

// New starts an events broadcaster that writes to the API server through
// client until ctx ends, and returns its recorder. scheme must know the
// integrations.serviceradar.io kinds.
func New(ctx context.Context, client kubernetes.Interface, scheme *runtime.Scheme, o Options) (*Recorder, error) {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, fmt.Errorf("starting the events broadcaster: %w", err)
	}
	context.AfterFunc(ctx, b.Shutdown)
	return NewWithRecorder(b.NewRecorder(scheme, Component), o), nil
}

// NewWithRecorder rate-limits an existing recorder.
func NewWithRecorder(rec events.EventRecorder, o Options) *Recorder {
	if o.Limit.Burst <= 0 || o.Limit.Every <= 0 {
		o.Limit = DefaultLimit
	}
	if o.Dropped == nil {
		o.Dropped = func() {}
	}
	return &Recorder{rec: rec, limit: o.Limit, lim: lru.New(limiterEntries), dropped: o.Dropped}
}

// allow takes a token of the object's bucket for reason.
func (r *Recorder) allow(uid types.UID, reason string) bool {
	return r.take("uid/" + string(uid) + "/" + reason)
}

// CertificateAllowed takes a token of the bucket of a refused caller's
// identity, before the SyncService it names is looked up: a caller that
// retries a refused certificate costs no lookup beyond the rate. False on
// a nil Recorder.
func (r *Recorder) CertificateAllowed(identity string) bool {
	return r != nil && r.take("identity/"+identity+"/"+ReasonCertificateRefused)
}

// take takes a token of key's bucket.
func (r *Recorder) take(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l *rate.Limiter
	if v, ok := r.lim.Get(key); ok {
		l = v.(*rate.Limiter) //nolint:forcetypeassert // only limiters are stored
	} else {
		l = rate.NewLimiter(rate.Every(r.limit.Every), r.limit.Burst)
		r.lim.Add(key, l)
	}
	if !l.Allow() {
		r.dropped()
		return false
	}
	return true
}

func (r *Recorder) eventf(obj runtime.Object, uid types.UID, eventType, reason, action, note string, args ...any) {
	if r == nil || !r.allow(uid, reason) {
		return
	}
	r.rec.Eventf(obj, nil, eventType, reason, action, note, args...)
}

// RunFinished records the event of a source's finished run, if it calls
// for one: a Warning when it failed, was partial or had its retraction
// held, a Normal one when it succeeded and changed devices.
func (r *Recorder) RunFinished(src *v1alpha1.IntegrationSource, run store.RunRecord) {
	if r == nil || src == nil {
		return
	}
	result, _ := runstatus.Result(run)
	mode := run.Mode
	if mode == "" {
		mode = "unknown"
	}
	counts := fmt.Sprintf("fetched %d, created %d, updated %d, unchanged %d, merged %d, retracted %d, refused %d",
		run.Devices+run.Refused, run.Created, run.Updated, run.Unchanged, run.Merged, run.Retracted, run.Refused)
	switch result {
	case v1alpha1.SyncResultFailed:
		r.eventf(src, src.UID, corev1.EventTypeWarning, ReasonRunFailed, ActionSync,
			"Run %s (%s) failed: no device was delivered; see status.lastRun.error", run.RunID, mode)
	case v1alpha1.SyncResultPartial:
		r.eventf(src, src.UID, corev1.EventTypeWarning, ReasonRunPartial, ActionSync,
			"Run %s (%s) was partial: %s; see status.lastRun.error", run.RunID, mode, counts)
	case v1alpha1.SyncResultHeldRetraction:
		if h := run.Held; h != nil && h.State == store.HeldState {
			r.eventf(src, src.UID, corev1.EventTypeWarning, ReasonRetractionHeld, ActionRetract,
				"Run %s would retract %d of the source's %d available devices, more than maxRetractPercent %d%%: nothing was retracted. Approve it once with the annotation %s=%s",
				run.RunID, h.Devices, h.Of, h.Limit, v1alpha1.ApproveRetractionAnnotation, run.RunID)
		}
	case v1alpha1.SyncResultSuccess:
		if run.Created+run.Updated+run.Merged+run.Retracted > 0 {
			r.eventf(src, src.UID, corev1.EventTypeNormal, ReasonRunCompleted, ActionSync, "Run %s (%s) completed: %s", run.RunID, mode, counts)
		}
	}
}

// RetractionReleased records that an approval released the held
// retraction of a source's run.
func (r *Recorder) RetractionReleased(src *v1alpha1.IntegrationSource, runID string, retracted, available int) {
	if r == nil || src == nil {
		return
	}
	r.eventf(src, src.UID, corev1.EventTypeNormal, ReasonRetractionReleased, ActionRetract,
		"The approved retraction of run %s retracted %d devices; the source reports %d available", runID, retracted, available)
}

// CertificateRefused records that an edge certificate naming ss was
// refused, and why (a fixed sentence naming the rule, never what the
// caller sent).
func (r *Recorder) CertificateRefused(ss *v1alpha1.SyncService, why string) {
	if r == nil || ss == nil {
		return
	}
	r.eventf(ss, ss.UID, corev1.EventTypeWarning, ReasonCertificateRefused, ActionAuthorize, "Refused an edge certificate of this SyncService: %s", why)
}
