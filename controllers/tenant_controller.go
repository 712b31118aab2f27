package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
)

// Tenant condition reasons.
const (
	// ReasonReservedSlug means the tenant breaks the reserved platform slug rule.
	ReasonReservedSlug = "ReservedSlug"
	// ReasonDuplicatePlatformTenant means an older platform tenant exists.
	ReasonDuplicatePlatformTenant = "DuplicatePlatformTenant"
	// ReasonPlatformIdentity means the platform UUID or CA could not be read or created.
	ReasonPlatformIdentity = "PlatformIdentityUnavailable"
)

// TenantReconciler sets each Tenant's UUID, namespaces and Ready condition,
// and makes sure its intermediate CA exists.
type TenantReconciler struct {
	Client       client.Client
	Platform     *platform.Store
	PlatformSlug string
	Events       events.EventRecorder
}

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants,verbs=get;list;watch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile implements reconcile.Reconciler.
func (r *TenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	t := &v1alpha1.Tenant{}
	if err := r.Client.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	want := v1alpha1.TenantStatus{ObservedGeneration: t.Generation}
	ok, reason, msg, err := r.evaluate(ctx, t, &want)
	if err != nil {
		ok, reason, msg = false, ReasonPlatformIdentity, err.Error()
	}
	want.Conditions = []metav1.Condition{condition(t.Status.Conditions, v1alpha1.ConditionReady, ok, reason, msg, t.Generation)}

	if t.Status.ObservedGeneration == want.ObservedGeneration && t.Status.TenantID == want.TenantID &&
		slices.Equal(t.Status.Namespaces, want.Namespaces) && sameConditions(t.Status.Conditions, want.Conditions) {
		return ctrl.Result{}, err
	}
	if aerr := applyStatus(ctx, r.Client, "Tenant", t, want); aerr != nil {
		return ctrl.Result{}, aerr
	}
	r.event(t, ok, reason, msg)
	return ctrl.Result{}, err
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

// evaluate fills the status and says whether the tenant is Ready.
func (r *TenantReconciler) evaluate(ctx context.Context, t *v1alpha1.Tenant, st *v1alpha1.TenantStatus) (bool, string, string, error) {
	switch {
	case t.Spec.Platform && t.Spec.Slug != r.PlatformSlug:
		return false, ReasonReservedSlug, fmt.Sprintf("the platform tenant must use the platform slug %q", r.PlatformSlug), nil
	case !t.Spec.Platform && t.Spec.Slug == r.PlatformSlug:
		return false, ReasonReservedSlug, fmt.Sprintf("slug %q is reserved for the platform tenant", r.PlatformSlug), nil
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
		sort.Slice(platforms, func(i, j int) bool {
			a, b := platforms[i], platforms[j]
			if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
				return a.CreationTimestamp.Before(&b.CreationTimestamp)
			}
			return a.Name < b.Name
		})
		if len(platforms) > 0 && platforms[0].Name != t.Name {
			return false, ReasonDuplicatePlatformTenant, fmt.Sprintf("tenant %q is already the platform tenant; only one may exist", platforms[0].Name), nil
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
	if _, err := r.Platform.TenantCA(ctx, t.Spec.Slug); err != nil {
		return false, "", "", err
	}
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
	err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Tenant{}).
		Named("tenant").
		// A namespace joining or leaving a tenant changes its status.namespaces;
		// both the old and the new label matter, so the handler sees both objects.
		Watches(&corev1.Namespace{}, tenantsForSlug(r.Client, func(o client.Object) string {
			return o.GetLabels()[v1alpha1.TenantLabel]
		})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up tenant controller: %w", err)
	}
	return nil
}
