package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
)

// PlatformSyncName is the name of the platform SyncService created at bootstrap.
const PlatformSyncName = "platform-sync"

// DefaultIdentityCheckInterval is how often the leader checks that the
// platform identity Secrets still exist.
const DefaultIdentityCheckInterval = 30 * time.Second

// Bootstrap makes the platform exist: the operator namespace labeled for the
// platform tenant, the platform Tenant, its persisted UUID and root CA, and
// (unless disabled) the platform SyncService. It runs on the leader, only
// creates what is missing (users' later edits are kept and a restart writes
// nothing), and never mints a new platform UUID or root CA where the cluster
// shows it had one (see platform.EnsurePlatformTenantID): it recovers the
// UUID from the platform Tenant's status, or refuses with an event and the
// Tenants' Ready condition until platform.RekeyAnnotation allows starting
// over. Afterwards it checks every IdentityCheckInterval that the identity
// Secrets still exist, and recovers (or refuses) the same way.
type Bootstrap struct {
	Client       client.Client
	Reader       client.Reader
	Store        *platform.Store
	PlatformSlug string
	// PlatformSync creates the platform SyncService when true.
	PlatformSync bool
	Log          logr.Logger
	// Events records recoveries and refusals on the platform Tenant; nil records none.
	Events events.EventRecorder
	// Resync channels each receive an event whenever the platform identity
	// changes state (recovered, re-keyed, refused), so that every Tenant is
	// evaluated again and the gateway certificate checked.
	Resync []chan<- event.GenericEvent
	// IdentityCheckInterval is how often the identity Secrets are checked
	// after the bootstrap; zero means DefaultIdentityCheckInterval.
	IdentityCheckInterval time.Duration

	refused     string // the last refusal, so that it is reported once
	checkedOnce bool
}

// NeedLeaderElection makes Bootstrap run on the leader only.
func (b *Bootstrap) NeedLeaderElection() bool { return true }

// Start runs the bootstrap, retrying with backoff until it succeeds or ctx ends.
func (b *Bootstrap) Start(ctx context.Context) error {
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 8, Cap: 30 * time.Second}
	for {
		err := b.Run(ctx)
		if err == nil {
			b.Log.Info("platform bootstrap complete", "namespace", b.Store.Namespace, "platformSlug", b.PlatformSlug)
			break
		}
		b.Log.Error(err, "platform bootstrap failed; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff.Step()):
		}
	}
	interval := b.IdentityCheckInterval
	if interval <= 0 {
		interval = DefaultIdentityCheckInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := b.checkIdentity(ctx); err != nil {
			b.Log.Error(err, "checking the platform identity")
		}
	}
}

// checkIdentity ensures the identity again when one of its Secrets is gone
// or changed (two reads when both are as checked).
func (b *Bootstrap) checkIdentity(ctx context.Context) error {
	same, err := b.Store.Unchanged(ctx)
	if err != nil || same {
		return err
	}
	return b.ensureIdentity(ctx)
}

// Run performs one bootstrap pass.
func (b *Bootstrap) Run(ctx context.Context) error {
	ns := &corev1.Namespace{}
	if err := b.Reader.Get(ctx, client.ObjectKey{Name: b.Store.Namespace}, ns); err != nil {
		return fmt.Errorf("reading operator namespace %q: %w", b.Store.Namespace, err)
	}
	if ns.Labels[v1alpha1.TenantLabel] != b.PlatformSlug {
		apply := applycorev1.Namespace(b.Store.Namespace).WithLabels(map[string]string{v1alpha1.TenantLabel: b.PlatformSlug})
		if err := b.Client.Apply(ctx, apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("labeling operator namespace %q for the platform tenant: %w", b.Store.Namespace, err)
		}
	}
	tenant := &v1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: b.PlatformSlug, Labels: map[string]string{platform.ManagedByLabel: platform.ManagedBy}},
		Spec:       v1alpha1.TenantSpec{Slug: b.PlatformSlug, Platform: true, DisplayName: "Platform"},
	}
	if err := b.createIfMissing(ctx, tenant); err != nil {
		return err
	}
	if err := b.ensureIdentity(ctx); err != nil {
		return err
	}
	if !b.PlatformSync {
		return nil
	}
	ss := &v1alpha1.SyncService{
		ObjectMeta: metav1.ObjectMeta{Name: PlatformSyncName, Namespace: b.Store.Namespace, Labels: map[string]string{platform.ManagedByLabel: platform.ManagedBy}},
		Spec:       v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Platform: true},
	}
	return b.createIfMissing(ctx, ss)
}

func (b *Bootstrap) createIfMissing(ctx context.Context, obj client.Object) error {
	existing := obj.DeepCopyObject().(client.Object)
	err := b.Reader.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	if err := b.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// ensureIdentity makes the platform UUID and root CA Secrets exist from what
// the cluster shows (see platform.EnsurePlatformTenantID and EnsureRootCA),
// reports recoveries and refusals, and consumes a re-key annotation.
func (b *Bootstrap) ensureIdentity(ctx context.Context) error {
	pt := &v1alpha1.Tenant{}
	if err := b.Reader.Get(ctx, client.ObjectKey{Name: b.PlatformSlug}, pt); err != nil {
		return fmt.Errorf("reading the platform Tenant %q: %w", b.PlatformSlug, err)
	}
	ev, err := b.evidence(ctx)
	if err != nil {
		return err
	}
	rekey := pt.Annotations[platform.RekeyAnnotation] == "true"
	_, idOutcome, err := b.Store.EnsurePlatformTenantID(ctx, ev, rekey)
	if err == nil {
		var caOutcome platform.Outcome
		if _, caOutcome, err = b.Store.EnsureRootCA(ctx, ev, rekey); err == nil {
			b.report(pt, idOutcome, caOutcome)
		}
	}
	if errors.Is(err, platform.ErrIdentityLost) {
		if msg := err.Error(); msg != b.refused {
			b.refused = msg
			b.event(pt, corev1.EventTypeWarning, "PlatformIdentityLost", msg)
			b.resync()
		}
		return err
	}
	if err != nil {
		return err
	}
	b.refused = ""
	if !b.checkedOnce {
		// Controllers waiting for the first check go on now.
		b.checkedOnce = true
		b.resync()
	}
	if rekey {
		patch := client.MergeFrom(pt.DeepCopy())
		delete(pt.Annotations, platform.RekeyAnnotation)
		if err := b.Client.Patch(ctx, pt, patch); err != nil {
			return fmt.Errorf("removing the re-key annotation from the platform Tenant %q: %w", pt.Name, err)
		}
	}
	return nil
}

// evidence reads what the cluster shows of an earlier platform identity.
func (b *Bootstrap) evidence(ctx context.Context) (platform.Evidence, error) {
	ev := platform.Evidence{TenantIDs: map[string]string{}}
	var tenants v1alpha1.TenantList
	if err := b.Reader.List(ctx, &tenants); err != nil {
		return ev, fmt.Errorf("listing Tenants: %w", err)
	}
	for _, t := range tenants.Items {
		switch {
		case t.Status.TenantID == "":
		case t.Spec.Platform && t.Spec.Slug == b.PlatformSlug:
			ev.PlatformTenantID = t.Status.TenantID
		case !t.Spec.Platform:
			ev.TenantIDs[t.Spec.Slug] = t.Status.TenantID
		}
	}
	cas, err := b.Store.ListTenantCAs(ctx)
	ev.TenantCAs = cas
	return ev, err
}

// report records what ensureIdentity did, when it did more than find the
// Secrets in place.
func (b *Bootstrap) report(pt *v1alpha1.Tenant, id, root platform.Outcome) {
	var notes []string
	switch id {
	case platform.Recovered:
		notes = append(notes, fmt.Sprintf("the platform identity Secret %s was missing and is recovered from the platform Tenant's recorded ID; no tenant ID changed", platform.IdentitySecret))
	case platform.Rekeyed:
		notes = append(notes, "a new platform UUID was minted as the re-key annotation asked: every tenant's ID changes")
	}
	if root == platform.Rekeyed {
		notes = append(notes, "a new root CA was minted as the re-key annotation asked: tenant CAs are reissued and edge sites need new certificates")
	}
	if len(notes) == 0 {
		return
	}
	reason := "PlatformIdentityRecovered"
	if id == platform.Rekeyed || root == platform.Rekeyed {
		reason = "PlatformRekeyed"
	}
	msg := strings.Join(notes, "; ")
	b.Log.Info(msg, "reason", reason)
	b.event(pt, corev1.EventTypeNormal, reason, msg)
	b.resync()
}

func (b *Bootstrap) event(pt *v1alpha1.Tenant, typ, reason, msg string) {
	if b.Events != nil {
		b.Events.Eventf(pt, nil, typ, reason, "Bootstrap", "%s", msg)
	}
}

// resync asks for every Tenant to be evaluated again, without blocking.
func (b *Bootstrap) resync() {
	for _, ch := range b.Resync {
		select {
		case ch <- event.GenericEvent{Object: &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: b.PlatformSlug}}}:
		default: // one notice pending is enough
		}
	}
}

// waitingForBootstrap reports whether err only means that the bootstrap has
// not checked or created the platform identity yet (not that it refused).
func waitingForBootstrap(err error) bool {
	return !errors.Is(err, platform.ErrIdentityLost) &&
		(errors.Is(err, platform.ErrIdentityUnchecked) || errors.Is(err, platform.ErrIdentityMissing) || errors.Is(err, platform.ErrRootCAMissing))
}
