// Package syncnow carries out "sync now": the annotation
// integrations.serviceradar.io/sync-requested-at=<RFC 3339 time> on an
// IntegrationSource (with integrations.serviceradar.io/sync-mode full or
// incremental) asks the source's worker for an immediate run. The gateway
// replica that holds the worker's ControlStream sends it a sync.run_now
// command and records the request and the worker's answer in
// status.syncRequest.
//
// Every gateway replica runs the controller, and the rules keep them from
// fighting over one request:
//   - only the replica holding the worker's ControlStream delivers the
//     request or defers it; it reads the source from the API server (not the
//     cache) first, so a request recorded already is never sent again;
//   - a request is acted on once: one whose time is not after
//     status.syncRequest.requestedAt is left alone (a Deferred one waits for
//     its turn);
//   - one request per source per v1alpha1.SyncRequestInterval reaches the
//     worker, counted from status.syncRequest.deliveredAt, which all
//     replicas read; one inside it is recorded Deferred and sent when the
//     interval has passed;
//   - a replica without the worker's stream writes nothing until a minute
//     (NotConnectedAfter) after it first saw the request, or after the rate
//     limit lets it go if later; then, if no replica has recorded an outcome,
//     it records NotConnected. That write, like every one that is no
//     delivery, carries the resourceVersion it decided on, so of replicas
//     racing only one succeeds, and the others see the outcome and stop. A
//     delivery is written whatever was recorded meanwhile: it is what
//     happened.
//
// The worker runs each request time once, so a request delivered twice
// (replicas racing, or a retry after a lost answer) runs once.
package syncnow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/server"
	gqueue "github.com/serviceradar/sync-operator/gateway/workqueue"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/statusapply"
	"github.com/serviceradar/sync-operator/wire/commands"
)

// FieldOwner is the server-side apply field manager of status.syncRequest.
// It is not the gateway's run-status manager (server.FieldOwner): that one
// applies the run fields whole, which would remove a field it does not send.
const FieldOwner = "sync-operator-gateway-sync-now"

// Defaults of a Controller.
const (
	// DefaultNotConnectedAfter is how long after a replica first saw a
	// request it records NotConnected when no replica delivered it.
	DefaultNotConnectedAfter = time.Minute
	// DefaultAnswerTimeout bounds the wait for the worker's answer.
	DefaultAnswerTimeout = 30 * time.Second
	// commandTTL is how long a sent request stays valid at the worker.
	commandTTL = time.Minute
	// maxMessage is the CRD's bound of status.syncRequest.message.
	maxMessage = 1024
)

// Sender reaches workers over their ControlStreams on this replica
// (*server.Server).
type Sender interface {
	Connected(worker identity.Identity) bool
	SendCommand(ctx context.Context, worker identity.Identity, cmd server.Command) (server.CommandOutcome, error)
}

// Controller watches the sync-now annotation of IntegrationSources.
type Controller struct {
	// Reader is the informer cache; Live reads sources from the API server
	// and applies their status.
	Reader client.Reader
	Live   client.Client
	// Sender delivers the requests.
	Sender Sender
	// TrustDomain is the SPIFFE trust domain of in-cluster workers.
	TrustDomain spiffeid.TrustDomain
	// PlatformSlug is the reserved slug of the platform tenant: a platform
	// SyncService serves every tenant only from its namespaces.
	PlatformSlug string
	// Interval is the per-source rate limit (zero: v1alpha1.SyncRequestInterval).
	Interval time.Duration
	// NotConnectedAfter and AnswerTimeout: zero takes their defaults.
	NotConnectedAfter, AnswerTimeout time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	Log logr.Logger

	queue workqueue.TypedRateLimitingInterface[types.NamespacedName]
	// seen is when this replica first saw each source's pending request.
	mu   sync.Mutex
	seen map[types.NamespacedName]sighting
}

// sighting is a request this replica saw and when.
type sighting struct {
	uid   types.UID
	value string
	first time.Time
}

// Watch registers for IntegrationSource events on informers; call it
// before the cache starts, then Run.
func (c *Controller) Watch(ctx context.Context, informers ctrlcache.Cache) error {
	c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]())
	c.seen = map[types.NamespacedName]sighting{}
	inf, err := informers.GetInformer(ctx, &v1alpha1.IntegrationSource{})
	if err != nil {
		return fmt.Errorf("watching integration sources for sync requests: %w", err)
	}
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(client.Object); ok && o.GetAnnotations()[v1alpha1.SyncRequestedAtAnnotation] != "" {
			c.queue.Add(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if o, ok := obj.(client.Object); ok {
				c.forget(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
			}
		},
	}); err != nil {
		return fmt.Errorf("watching integration sources for sync requests: %w", err)
	}
	return nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	gqueue.Run(ctx, c.queue, c.Log, "sync request", c.reconcile)
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return v1alpha1.SyncRequestInterval
}

// request is a source's sync-now annotations, read.
type request struct {
	// value is the annotation's raw value; at its time, to the second.
	value string
	at    time.Time
	mode  v1alpha1.SyncMode
	// invalid is why the annotations cannot be acted on ("" when they can).
	invalid string
}

// requestOf reads the source's annotations; ok is false when it asks for nothing.
func requestOf(src *v1alpha1.IntegrationSource) (request, bool) {
	raw := strings.TrimSpace(src.Annotations[v1alpha1.SyncRequestedAtAnnotation])
	if raw == "" || !src.DeletionTimestamp.IsZero() {
		return request{}, false
	}
	r := request{value: raw, mode: v1alpha1.SyncModeFull}
	at, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		r.invalid = fmt.Sprintf("annotation %s: %q is not an RFC 3339 time such as %s", v1alpha1.SyncRequestedAtAnnotation, clip(raw, 64),
			"2026-01-02T15:04:05Z")
		return r, true
	}
	r.at = at.UTC().Truncate(time.Second)
	switch m := strings.TrimSpace(src.Annotations[v1alpha1.SyncModeAnnotation]); m {
	case "", string(v1alpha1.SyncModeFull):
	case string(v1alpha1.SyncModeIncremental):
		r.mode = v1alpha1.SyncModeIncremental
	default:
		r.invalid = fmt.Sprintf("annotation %s: %q is neither %q nor %q", v1alpha1.SyncModeAnnotation, clip(m, 64),
			v1alpha1.SyncModeFull, v1alpha1.SyncModeIncremental)
	}
	return r, true
}

// settled reports whether status already records the outcome of r: a
// valid request not newer than the one recorded (unless that one, the
// same, waits as Deferred), or the same invalid annotations.
func settled(rec *v1alpha1.SyncRequestStatus, r request) bool {
	if rec == nil {
		return false
	}
	if r.invalid != "" {
		return rec.Result == v1alpha1.SyncRequestInvalid && rec.Message == r.invalid
	}
	if rec.RequestedAt == nil || r.at.After(rec.RequestedAt.Time) {
		return false
	}
	return !r.at.Equal(rec.RequestedAt.Time) || rec.Result != v1alpha1.SyncRequestDeferred
}

// reconcile acts on a source's request; a positive duration asks to look
// again after it.
func (c *Controller) reconcile(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
	src := &v1alpha1.IntegrationSource{}
	if err := c.Reader.Get(ctx, key, src); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(key)
		}
		return 0, client.IgnoreNotFound(err) //nolint:wrapcheck // nil or a cache error, logged with the key
	}
	if r, ok := requestOf(src); !ok || settled(src.Status.SyncRequest, r) {
		return 0, nil
	}
	// The cache may lag behind a write of this or another replica: decide
	// on the source as the API server has it.
	cur := &v1alpha1.IntegrationSource{}
	if err := c.Live.Get(ctx, key, cur); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(key)
			return 0, nil
		}
		return 0, fmt.Errorf("reading IntegrationSource %s: %w", key, err)
	}
	r, ok := requestOf(cur)
	prev := cur.Status.SyncRequest
	if !ok || settled(prev, r) {
		return 0, nil
	}
	now := c.now().UTC().Truncate(time.Second)
	rec := v1alpha1.SyncRequestStatus{ObservedAt: &metav1.Time{Time: now}}
	if prev != nil {
		rec.DeliveredAt = prev.DeliveredAt
		if prev.RequestedAt != nil && prev.RequestedAt.Equal(&metav1.Time{Time: r.at}) && prev.ObservedAt != nil {
			rec.ObservedAt = prev.ObservedAt
		}
	}
	if r.invalid != "" {
		rec.Result, rec.Message = v1alpha1.SyncRequestInvalid, r.invalid
		c.Log.Info("refused a sync request", "source", key.String(), "reason", r.invalid)
		return 0, c.record(ctx, cur, rec, true)
	}
	rec.RequestedAt, rec.Mode = &metav1.Time{Time: r.at}, r.mode
	worker, whose, resolveErr := c.worker(ctx, cur)
	if resolveErr != nil {
		return 0, resolveErr
	}
	var allowed time.Time
	if rec.DeliveredAt != nil {
		allowed = rec.DeliveredAt.Add(c.interval())
	}
	if whose != "" || !c.Sender.Connected(worker) {
		return c.notConnected(ctx, cur, r, rec, allowed, worker, whose)
	}
	if now.Before(allowed) {
		rec.Result = v1alpha1.SyncRequestDeferred
		rec.Message = fmt.Sprintf("rate limited: one sync-now request per %s per source; the previous one reached the worker at %s, this one is sent at %s",
			c.interval(), rec.DeliveredAt.UTC().Format(time.RFC3339), allowed.UTC().Format(time.RFC3339))
		if prev == nil || prev.Result != rec.Result || prev.Message != rec.Message || !prev.RequestedAt.Equal(rec.RequestedAt) {
			if err := c.record(ctx, cur, rec, true); err != nil {
				return 0, err
			}
			c.Log.Info("deferred a sync request", "source", key.String(), "requestedAt", r.value, "until", allowed.Format(time.RFC3339))
		}
		return allowed.Sub(now) + time.Second, nil
	}
	return c.deliver(ctx, cur, r, rec, worker)
}

// deliver sends the request to the worker and records its answer.
func (c *Controller) deliver(ctx context.Context, cur *v1alpha1.IntegrationSource, r request, rec v1alpha1.SyncRequestStatus, worker identity.Identity) (time.Duration, error) {
	key := client.ObjectKeyFromObject(cur)
	payload, err := commands.RunNow{IntegrationSourceUID: string(cur.UID), Mode: string(r.mode), RequestedAt: r.at}.Encode()
	if err != nil {
		return 0, fmt.Errorf("sync request of %s: %w", key, err)
	}
	actx, cancel := context.WithTimeout(ctx, c.answerTimeout())
	out, err := c.Sender.SendCommand(actx, worker, server.Command{Type: commands.RunNowType, Payload: payload, TTL: commandTTL})
	cancel()
	switch {
	case errors.Is(err, server.ErrNotConnected):
		// The stream ended since Connected: look again.
		return time.Second, nil
	case err != nil:
		rec.Result = v1alpha1.SyncRequestFailed
		rec.Message = clip("the request was sent to the worker but its answer did not come: "+err.Error(), maxMessage)
	case out.Result.GetSuccess():
		rec.Result, rec.Message = v1alpha1.SyncRequestAccepted, clip(out.Result.GetMessage(), maxMessage)
		rec.DeliveredAt = &metav1.Time{Time: c.now().UTC().Truncate(time.Second)}
	default:
		rec.Result, rec.Message = v1alpha1.SyncRequestRejected, clip(out.Result.GetMessage(), maxMessage)
		rec.DeliveredAt = &metav1.Time{Time: c.now().UTC().Truncate(time.Second)}
	}
	c.Log.Info("delivered a sync request", "source", key.String(), "worker", worker.String(), "requestedAt", r.value, "mode", r.mode,
		"result", rec.Result, "answer", rec.Message)
	c.forget(key)
	return 0, c.record(ctx, cur, rec, false)
}

// notConnected handles a request that this replica cannot deliver: it
// waits, and records NotConnected once no replica has delivered it in time.
func (c *Controller) notConnected(ctx context.Context, cur *v1alpha1.IntegrationSource, r request, rec v1alpha1.SyncRequestStatus,
	allowed time.Time, worker identity.Identity, whose string,
) (time.Duration, error) {
	key := client.ObjectKeyFromObject(cur)
	now := c.now()
	first := c.firstSeen(key, cur.UID, r.value, now)
	due := first
	if allowed.After(due) {
		due = allowed
	}
	due = due.Add(c.notConnectedAfter())
	if now.Before(due) {
		return due.Sub(now), nil
	}
	rec.Result = v1alpha1.SyncRequestNotConnected
	if whose == "" {
		whose = fmt.Sprintf("no gateway replica holds a control stream of its worker %s", worker.String())
	}
	rec.Message = clip(fmt.Sprintf("not delivered: %s for %s after the request was seen; set %s again once the worker is connected",
		whose, c.notConnectedAfter(), v1alpha1.SyncRequestedAtAnnotation), maxMessage)
	c.Log.Info("a sync request found no connected worker", "source", key.String(), "requestedAt", r.value, "reason", whose)
	c.forget(key)
	return 0, c.record(ctx, cur, rec, true)
}

func (c *Controller) notConnectedAfter() time.Duration {
	if c.NotConnectedAfter > 0 {
		return c.NotConnectedAfter
	}
	return DefaultNotConnectedAfter
}

func (c *Controller) answerTimeout() time.Duration {
	if c.AnswerTimeout > 0 {
		return c.AnswerTimeout
	}
	return DefaultAnswerTimeout
}

// worker is the certificate identity of the worker that runs src, as the
// gateway classifies it: the SyncService's component id for the source's
// tenant, in the SyncService's partition, an edge CN for an OnPrem
// SyncService and an SVID otherwise (bundle.SyncServiceFor is the same
// mapping the other way). whose says why there is none, for status: also
// when the SyncService may not serve src (v1alpha1.MayServe, the rule the
// manager and the bundles follow), so that no request reaches a worker that
// does not run the source.
func (c *Controller) worker(ctx context.Context, src *v1alpha1.IntegrationSource) (worker identity.Identity, whose string, err error) {
	ns := &corev1.Namespace{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: src.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return worker, fmt.Sprintf("the namespace %s is not found", src.Namespace), nil
		}
		return worker, "", fmt.Errorf("reading namespace %s: %w", src.Namespace, err)
	}
	slug := ns.Labels[v1alpha1.TenantLabel]
	if slug == "" {
		return worker, fmt.Sprintf("the namespace %s belongs to no tenant (label %s)", src.Namespace, v1alpha1.TenantLabel), nil
	}
	ref := src.SyncServiceKey()
	ss := &v1alpha1.SyncService{}
	if err := c.Reader.Get(ctx, ref, ss); err != nil {
		if apierrors.IsNotFound(err) {
			return worker, fmt.Sprintf("the SyncService %s/%s is not found", ref.Namespace, ref.Name), nil
		}
		return worker, "", fmt.Errorf("reading SyncService %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	ssSlug := ""
	if ref.Namespace == src.Namespace {
		ssSlug = slug
	} else {
		ssNS := &corev1.Namespace{}
		if err := c.Reader.Get(ctx, client.ObjectKey{Name: ref.Namespace}, ssNS); client.IgnoreNotFound(err) != nil {
			return worker, "", fmt.Errorf("reading namespace %s: %w", ref.Namespace, err)
		}
		ssSlug = ssNS.Labels[v1alpha1.TenantLabel]
	}
	if r := v1alpha1.MayServe(ss, src, v1alpha1.SlugTenant(ssSlug, c.PlatformSlug), v1alpha1.SlugTenant(slug, c.PlatformSlug)); r != nil {
		return worker, r.Message, nil
	}
	worker = identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: slug,
		Partition: ss.Spec.Partition, ComponentID: v1alpha1.ComponentID(ss, slug)}
	if ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem {
		worker.Class, worker.ComponentType = identity.ClassEdge, identity.ComponentUnspecified
		return worker, "", nil
	}
	id, err := identity.FormatSPIFFEID(c.TrustDomain, identity.ComponentSync, slug, ss.Spec.Partition, worker.ComponentID)
	if err != nil {
		return worker, fmt.Sprintf("the worker of SyncService %s/%s has no valid identity: %v", ref.Namespace, ref.Name, err), nil
	}
	worker.SPIFFEID = id
	return worker, "", nil
}

// record applies rec as status.syncRequest. lock makes the write
// conditional on the resourceVersion the decision was made on.
func (c *Controller) record(ctx context.Context, cur *v1alpha1.IntegrationSource, rec v1alpha1.SyncRequestStatus, lock bool) error {
	obj := &v1alpha1.IntegrationSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: cur.Namespace, Name: cur.Name, UID: cur.UID},
		Status:     v1alpha1.IntegrationSourceStatus{SyncRequest: &rec},
	}
	if lock {
		obj.ResourceVersion = cur.ResourceVersion
	}
	if err := statusapply.Apply(ctx, c.Live, FieldOwner, obj); err != nil {
		return fmt.Errorf("recording sync request %s: %w", rec.Result, err)
	}
	return nil
}

// firstSeen is when this replica first saw the request value of a source.
func (c *Controller) firstSeen(key types.NamespacedName, uid types.UID, value string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.seen[key]
	if !ok || s.uid != uid || s.value != value {
		s = sighting{uid: uid, value: value, first: now}
		c.seen[key] = s
	}
	return s.first
}

func (c *Controller) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen, key)
}

// clip bounds s to n bytes of valid UTF-8.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
