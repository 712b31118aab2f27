package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/statusapply"
	"github.com/serviceradar/sync-operator/tenancy"
)

// tenantFinalizer revokes a deleted Tenant's certificate authority, so that
// a Tenant created again with its slug gets a new one.
const tenantFinalizer = "integrations.serviceradar.io/revoke-ca"

// TenantReconciler sets each Tenant's UUID, namespaces, CA fingerprint and
// Ready condition, makes sure its intermediate CA exists, and revokes that
// CA when the Tenant is deleted (finalizer).
type TenantReconciler struct {
	Client       client.Client
	Platform     *platform.Store
	PlatformSlug string
	Events       events.EventRecorder
	// Resync, when set, delivers the bootstrap's notices that the platform
	// identity changed state: every Tenant is evaluated again.
	Resync <-chan event.GenericEvent
}

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile implements reconcile.Reconciler.
func (r *TenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	t := &v1alpha1.Tenant{}
	if err := r.Client.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !t.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, t)
	}
	// A slug refused since the Tenant was stored gets no finalizer: it never
	// gets a CA to revoke, and on a cluster without validation ratcheting
	// the patch itself would be refused, so the Tenant would never be
	// reported InvalidSlug (nor lose its tenant id).
	if v1alpha1.ValidSlug(t.Spec.Slug) == nil && !controllerutil.ContainsFinalizer(t, tenantFinalizer) {
		// An optimistic lock: a merge patch replaces the whole finalizer
		// list, so one from a stale cache would erase the gateway's.
		patch := client.MergeFromWithOptions(t.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(t, tenantFinalizer)
		// A new Tenant (no CA owner recorded) gets its CA for its own UID:
		// record it in the same write. A restored one keeps the owner it
		// records until its CA is adopted (recordCAOwner).
		if t.Annotations[platform.TenantCAOwnerAnnotation] == "" {
			metav1.SetMetaDataAnnotation(&t.ObjectMeta, platform.TenantCAOwnerAnnotation, string(t.UID))
		}
		if err := r.Client.Patch(ctx, t, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to tenant %s: %w", t.Name, err)
		}
	}
	want := v1alpha1.TenantStatus{ObservedGeneration: t.Generation}
	ok, reason, msg, err := r.evaluate(ctx, t, &want)
	if err != nil && waitingForBootstrap(err) {
		// Not a condition worth a write: the bootstrap checks the identity
		// at start and then notifies (Resync); the requeue is a fallback.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil {
		// The identity could not be read (a lost platform Secret the
		// bootstrap refuses to mint anew, an API error): the Tenant keeps
		// the ID and CA it had. They are what a recovery is made from, and
		// the gateway keeps serving by them.
		ok, reason, msg = false, v1alpha1.ReasonPlatformIdentity, err.Error()
		want.TenantID, want.CAFingerprint, want.Namespaces = t.Status.TenantID, t.Status.CAFingerprint, t.Status.Namespaces
	}
	var changed bool
	want.Conditions, changed = setConditions(t.Status.Conditions, time.Now(), newCondition(v1alpha1.ConditionReady, ok, reason, msg, t.Generation))

	if !changed && t.Status.ObservedGeneration == want.ObservedGeneration && t.Status.TenantID == want.TenantID &&
		t.Status.CAFingerprint == want.CAFingerprint && slices.Equal(t.Status.Namespaces, want.Namespaces) {
		return ctrl.Result{}, err
	}
	if err := r.clearIdentity(ctx, t, want); err != nil {
		return ctrl.Result{}, err
	}
	if aerr := statusapply.Apply(ctx, r.Client, FieldOwner, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: t.Name}, Status: want}); aerr != nil {
		return ctrl.Result{}, aerr //nolint:wrapcheck // it names the object
	}
	r.event(t, ok, reason, msg)
	return ctrl.Result{}, err
}

// clearIdentity removes a tenant id and CA fingerprint that the Tenant no
// longer has (an invalid or duplicated slug): applying a status without them
// removes them only where this field owner set them, not where an older
// manager or another writer did, and the gateway serves by them.
func (r *TenantReconciler) clearIdentity(ctx context.Context, t *v1alpha1.Tenant, want v1alpha1.TenantStatus) error {
	cleared := t.DeepCopy()
	if want.TenantID == "" {
		cleared.Status.TenantID = ""
	}
	if want.CAFingerprint == "" {
		cleared.Status.CAFingerprint = ""
	}
	if cleared.Status.TenantID == t.Status.TenantID && cleared.Status.CAFingerprint == t.Status.CAFingerprint {
		return nil
	}
	// A merge patch from t to cleared: exactly the two fields, set to null.
	if err := r.Client.Status().Patch(ctx, cleared, client.MergeFrom(t)); err != nil {
		return fmt.Errorf("clearing the tenant id and CA of tenant %s: %w", t.Name, err)
	}
	return nil
}

func (r *TenantReconciler) event(t *v1alpha1.Tenant, ok bool, reason, msg string) {
	if r.Events == nil {
		return
	}
	typ := corev1.EventTypeNormal
	if !ok {
		typ = corev1.EventTypeWarning
	}
	r.Events.Eventf(t, nil, typ, reason, "Reconcile", "%s", msg)
}

// finalize revokes the CA of a deleted Tenant, unless the CA belongs to
// another Tenant with the slug (this one was a refused duplicate), and
// releases it.
func (r *TenantReconciler) finalize(ctx context.Context, t *v1alpha1.Tenant) error {
	if !controllerutil.ContainsFinalizer(t, tenantFinalizer) {
		return nil
	}
	same, err := tenantsWithSlug(ctx, r.Client, t.Spec.Slug)
	if err != nil {
		return err
	}
	// The oldest Tenant of a slug had it alone before any duplicate came;
	// the CA's owner annotation settles it exactly where it is set.
	if len(same) == 0 || same[0].UID == t.UID {
		if err := r.Platform.RevokeTenantCA(ctx, t.Spec.Slug, t.UID); err != nil {
			return err
		}
		r.event(t, true, "CertificateAuthorityRevoked", fmt.Sprintf("the certificate authority of tenant %q is revoked", t.Spec.Slug))
	}
	patch := client.MergeFromWithOptions(t.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(t, tenantFinalizer)
	if err := r.Client.Patch(ctx, t, patch); err != nil {
		return fmt.Errorf("removing finalizer of tenant %s: %w", t.Name, err)
	}
	return nil
}

// tenantsWithSlug lists the Tenants with a slug, oldest first
// (tenancy.OldestFirst), deleted ones included.
func tenantsWithSlug(ctx context.Context, c client.Client, slug string) ([]v1alpha1.Tenant, error) {
	var ts v1alpha1.TenantList
	if err := c.List(ctx, &ts, client.MatchingFields{IndexTenantSlug: slug}); err != nil {
		return nil, fmt.Errorf("looking up tenant %q: %w", slug, err)
	}
	return tenancy.WithSlug(ts.Items, slug), nil
}

// resolveTenant returns the Tenant that a slug names, and false when it
// names none that may be served, by the rule of tenancy.Resolve that the
// gateway follows too.
func resolveTenant(ctx context.Context, c client.Client, slug string) (*v1alpha1.Tenant, bool, error) {
	ts, err := tenantsWithSlug(ctx, c, slug)
	if err != nil {
		return nil, false, err
	}
	t := tenancy.Resolve(ts, slug)
	return t, t != nil, nil
}

// evaluate fills the status and says whether the tenant is Ready.
func (r *TenantReconciler) evaluate(ctx context.Context, t *v1alpha1.Tenant, st *v1alpha1.TenantStatus) (bool, string, string, error) {
	if err := v1alpha1.ValidSlug(t.Spec.Slug); err != nil {
		// st keeps no tenant id nor CA fingerprint: nothing is served to it.
		return false, v1alpha1.ReasonInvalidSlug, fmt.Sprintf("%v: delete this Tenant and create it with a valid slug", err), nil
	}
	switch {
	case t.Spec.Platform && t.Spec.Slug != r.PlatformSlug:
		return false, v1alpha1.ReasonReservedSlug, fmt.Sprintf("the platform tenant must use the platform slug %q", r.PlatformSlug), nil
	case !t.Spec.Platform && t.Spec.Slug == r.PlatformSlug:
		return false, v1alpha1.ReasonReservedSlug, fmt.Sprintf("slug %q is reserved for the platform tenant", r.PlatformSlug), nil
	case t.Spec.Platform:
		var all v1alpha1.TenantList
		if err := r.Client.List(ctx, &all); err != nil {
			return false, "", "", fmt.Errorf("listing tenants: %w", err)
		}
		var platforms []v1alpha1.Tenant
		for _, o := range all.Items {
			if o.Spec.Platform {
				platforms = append(platforms, o)
			}
		}
		slices.SortFunc(platforms, tenancy.OldestFirst)
		if len(platforms) > 0 && platforms[0].Name != t.Name {
			return false, v1alpha1.ReasonDuplicatePlatformTenant, fmt.Sprintf("tenant %q is already the platform tenant; only one may exist", platforms[0].Name), nil
		}
	default:
		same, err := tenantsWithSlug(ctx, r.Client, t.Spec.Slug)
		if err != nil {
			return false, "", "", err
		}
		var others []string
		for _, o := range same {
			if o.UID != t.UID {
				others = append(others, o.Name)
			}
		}
		if len(others) > 0 {
			return false, v1alpha1.ReasonDuplicateSlug, fmt.Sprintf("Tenant(s) %v claim the same slug %q: none of them is served (no workers, schema or certificates) until only one is left",
				others, t.Spec.Slug), nil
		}
	}
	pid, err := r.Platform.PlatformTenantID(ctx)
	if err != nil {
		return false, "", "", err
	}
	st.TenantID = platform.TenantID(pid, t.Spec.Slug).String()
	if t.Spec.Platform {
		st.TenantID = pid.String()
	}
	tca, err := r.Platform.OwnTenantCA(ctx, t.Spec.Slug, t.UID, t.CreationTimestamp.Time, types.UID(t.Annotations[platform.TenantCAOwnerAnnotation]))
	if err != nil {
		return false, "", "", err
	}
	if err := r.recordCAOwner(ctx, t); err != nil {
		return false, "", "", err
	}
	st.CAFingerprint = identity.KeyFingerprint(tca.Cert)
	var nss corev1.NamespaceList
	if err := r.Client.List(ctx, &nss, client.MatchingLabels{v1alpha1.TenantLabel: t.Spec.Slug}); err != nil {
		return false, "", "", fmt.Errorf("listing namespaces of tenant %q: %w", t.Spec.Slug, err)
	}
	for _, ns := range nss.Items {
		st.Namespaces = append(st.Namespaces, ns.Name)
	}
	sort.Strings(st.Namespaces)
	return true, v1alpha1.ReasonReconciled, "tenant ID and certificate authority are in place", nil
}

// tenantsForSlug maps an object carrying a tenant slug to the Tenants with it.
func tenantsForSlug(c client.Client, slugOf func(client.Object) string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		slug := slugOf(o)
		if slug == "" {
			return nil
		}
		var ts v1alpha1.TenantList
		if err := c.List(ctx, &ts, client.MatchingFields{IndexTenantSlug: slug}); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, t := range ts.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: t.Name}})
		}
		return out
	})
}

// SetupWithManager registers the controller.
func (r *TenantReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Tenant{}).
		Named("tenant").
		// A Tenant coming or going changes whether the others with its slug
		// are duplicates.
		Watches(&v1alpha1.Tenant{}, tenantsForSlug(r.Client, func(o client.Object) string {
			return o.(*v1alpha1.Tenant).Spec.Slug
		})).
		// A namespace joining or leaving a tenant changes its status.namespaces;
		// both the old and the new label matter, so the handler sees both objects.
		Watches(&corev1.Namespace{}, tenantsForSlug(r.Client, func(o client.Object) string {
			return o.GetLabels()[v1alpha1.TenantLabel]
		}))
	if r.Resync != nil {
		b = b.WatchesRawSource(source.Channel(r.Resync, handler.EnqueueRequestsFromMapFunc(r.allTenants)))
	}
	err := b.Complete(r)
	if err != nil {
		return fmt.Errorf("setting up tenant controller: %w", err)
	}
	return nil
}

// allTenants maps a resync notice to every Tenant.
func (r *TenantReconciler) allTenants(ctx context.Context, _ client.Object) []reconcile.Request {
	var list v1alpha1.TenantList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&t)})
	}
	return out
}

// recordCAOwner records on the Tenant the UID its CA is owned by (once: new
// Tenants get it with their finalizer, restored ones after their CA was
// adopted), so that a backup of the Tenant carries it.
func (r *TenantReconciler) recordCAOwner(ctx context.Context, t *v1alpha1.Tenant) error {
	if t.Annotations[platform.TenantCAOwnerAnnotation] == string(t.UID) {
		return nil
	}
	patch := client.MergeFrom(t.DeepCopy())
	metav1.SetMetaDataAnnotation(&t.ObjectMeta, platform.TenantCAOwnerAnnotation, string(t.UID))
	if err := r.Client.Patch(ctx, t, patch); err != nil {
		return fmt.Errorf("recording the CA owner on tenant %s: %w", t.Name, err)
	}
	return nil
}
