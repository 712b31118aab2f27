package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/statusapply"
)

// IntegrationSourceReconciler checks that a source's tenant, credentials and
// SyncService resolve, records the worker assigned to it and sets Ready. It
// owns only status.conditions[Ready], status.observedGeneration and
// status.assignedWorker; the run results belong to the gateway.
type IntegrationSourceReconciler struct {
	Client client.Client
	// APIReader reads Secrets directly: the manager caches only their metadata.
	APIReader client.Reader
	// Guard refuses the operator's own Secrets as credentials.
	Guard  *SecretGuard
	Events events.EventRecorder
}

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources,verbs=get;list;watch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *IntegrationSourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	src := &v1alpha1.IntegrationSource{}
	if err := r.Client.Get(ctx, req.NamespacedName, src); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	worker, ok, reason, msg, err := r.evaluate(ctx, src)
	if err != nil {
		return ctrl.Result{}, err
	}
	prev := meta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionReady)
	conds, changed := setConditions(src.Status.Conditions, time.Now(), newCondition(v1alpha1.ConditionReady, ok, reason, msg, src.Generation))
	if !changed && src.Status.ObservedGeneration == src.Generation && src.Status.AssignedWorker == worker {
		return ctrl.Result{}, nil
	}
	if err := statusapply.Apply(ctx, r.Client, FieldOwner, &v1alpha1.IntegrationSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: src.Namespace, Name: src.Name},
		Status:     v1alpha1.IntegrationSourceStatus{ObservedGeneration: src.Generation, Conditions: conds, AssignedWorker: worker},
	}); err != nil {
		return ctrl.Result{}, err //nolint:wrapcheck // it names the object
	}
	// An event for each change that needs a reader: a source that cannot be
	// served, or one served again. A source Ready from its first reconcile
	// says so in status alone (at 2,000 sources, 2,000 events that carry
	// nothing status does not).
	if r.Events != nil && changed && (!ok || prev != nil && prev.Status != metav1.ConditionTrue) {
		typ := corev1.EventTypeNormal
		if !ok {
			typ = corev1.EventTypeWarning
		}
		r.Events.Eventf(src, nil, typ, reason, "Reconcile", "%s", msg)
	}
	return ctrl.Result{}, nil
}

// evaluate resolves the source's references. Missing things are conditions,
// not errors; only failed API calls are errors (and are retried).
func (r *IntegrationSourceReconciler) evaluate(ctx context.Context, src *v1alpha1.IntegrationSource) (worker string, ok bool, reason, msg string, err error) {
	tenant, found, err := tenantOfNamespace(ctx, r.Client, src.Namespace)
	if err != nil || !found {
		return "", false, v1alpha1.ReasonTenantNotFound, v1alpha1.TenantMissing(src.Namespace), err
	}
	if key, ok := v1alpha1.CredentialKey(src.Spec.Type); ok {
		sec := &corev1.Secret{}
		name := src.Spec.CredentialsSecretRef.Name
		// An operator Secret (a CA, an identity) is refused before it is read.
		why, err := r.Guard.Refused(ctx, src.Namespace, name)
		if err != nil {
			return "", false, "", "", err
		}
		if why != "" {
			return "", false, v1alpha1.ReasonSecretNotAllowed, fmt.Sprintf("Secret %q cannot hold credentials (%s): the gateway is never given it", name, why), nil
		}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: src.Namespace, Name: name}, sec); err != nil {
			if apierrors.IsNotFound(err) {
				return "", false, v1alpha1.ReasonSecretNotFound, fmt.Sprintf("Secret %q not found in namespace %q", name, src.Namespace), nil
			}
			return "", false, "", "", fmt.Errorf("reading Secret %s/%s: %w", src.Namespace, name, err)
		}
		if len(sec.Data[key]) == 0 {
			return "", false, v1alpha1.ReasonSecretInvalid, fmt.Sprintf("Secret %q has no key %q, which %s sources need", name, key, src.Spec.Type), nil
		}
	}
	ssKey := src.SyncServiceKey()
	ss := &v1alpha1.SyncService{}
	if err := r.Client.Get(ctx, ssKey, ss); err != nil {
		if apierrors.IsNotFound(err) {
			refusal := v1alpha1.SyncServiceUnusable(ssKey, tenant.Spec.Slug)
			return "", false, refusal.Reason, refusal.Message, nil
		}
		return "", false, "", "", fmt.Errorf("reading SyncService %s: %w", ssKey, err)
	}
	ssTenant, _, err := tenantOfNamespace(ctx, r.Client, ssKey.Namespace)
	if err != nil {
		return "", false, "", "", err
	}
	if refusal := v1alpha1.MayServe(ss, src, v1alpha1.NamespaceTenantOf(ssTenant), v1alpha1.NamespaceTenantOf(tenant)); refusal != nil {
		return "", false, refusal.Reason, refusal.Message, nil
	}
	worker = v1alpha1.ComponentID(ss, tenant.Spec.Slug)
	if src.Spec.Paused {
		return worker, true, v1alpha1.ReasonPaused, "source is paused; its worker keeps its devices and skips its runs", nil
	}
	return worker, true, v1alpha1.ReasonReconciled, fmt.Sprintf("served by SyncService %s (worker %s)", ssKey, worker), nil
}

// tenantOfNamespace resolves a namespace's tenant through its label.
func tenantOfNamespace(ctx context.Context, c client.Client, namespace string) (*v1alpha1.Tenant, bool, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading namespace %q: %w", namespace, err)
	}
	slug := ns.Labels[v1alpha1.TenantLabel]
	if slug == "" {
		return nil, false, nil
	}
	return resolveTenant(ctx, c, slug)
}

// sourcesBy enqueues the sources that opts (derived from the event's object) select.
func sourcesBy(c client.Client, opts func(client.Object) []client.ListOption) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list v1alpha1.IntegrationSourceList
		if err := c.List(ctx, &list, opts(o)...); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
		}
		return out
	})
}

// sourcesInTenantNamespaces enqueues every source in the namespaces of a
// tenant (for Tenant events) or of a namespace (for Namespace events).
func sourcesInNamespaces(c client.Client, namespaces func(context.Context, client.Object) []string) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, ns := range namespaces(ctx, o) {
			var list v1alpha1.IntegrationSourceList
			if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				continue
			}
			for _, s := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
			}
		}
		return out
	})
}

// SetupWithManager registers the controller. Secrets are watched as metadata
// only, so the manager never caches Secret contents.
func (r *IntegrationSourceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.IntegrationSource{}).
		Named("integrationsource").
		Watches(&corev1.Secret{}, sourcesBy(r.Client, func(o client.Object) []client.ListOption {
			return []client.ListOption{client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexSourceSecret: o.GetName()}}
		}), builder.OnlyMetadata).
		Watches(&v1alpha1.SyncService{}, sourcesBy(r.Client, func(o client.Object) []client.ListOption {
			return []client.ListOption{client.MatchingFields{IndexSourceSyncService: client.ObjectKeyFromObject(o).String()}}
		})).
		Watches(&corev1.Namespace{}, sourcesInNamespaces(r.Client, func(_ context.Context, o client.Object) []string {
			return []string{o.GetName()}
		})).
		Watches(&v1alpha1.Tenant{}, sourcesInNamespaces(r.Client, func(ctx context.Context, o client.Object) []string {
			var nss corev1.NamespaceList
			if err := r.Client.List(ctx, &nss, client.MatchingLabels{v1alpha1.TenantLabel: o.(*v1alpha1.Tenant).Spec.Slug}); err != nil {
				return nil
			}
			out := make([]string, 0, len(nss.Items))
			for _, ns := range nss.Items {
				out = append(out, ns.Name)
			}
			return out
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up integrationsource controller: %w", err)
	}
	return nil
}
