package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	applyrbacv1 "k8s.io/client-go/applyconfigurations/rbac/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// GatewayAccessName names the Role and the RoleBinding through which the
// manager grants the gateway, in each tenant namespace, the credentials
// Secrets that IntegrationSources there reference.
const GatewayAccessName = "sync-operator-gateway-credentials"

// grantAnnotation on the Role and RoleBinding is the hash of what they
// grant, so that an unchanged grant is recognised from metadata alone.
const grantAnnotation = "integrations.serviceradar.io/grant"

// The Roles and RoleBindings are read (metadata only, through a cache that
// lists and watches them by name), created, patched and deleted by name;
// their rules are within what the manager holds itself (secrets
// get/list/watch), so the API server's escalation check lets it grant them.
//
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;patch;delete,resourceNames=sync-operator-gateway-credentials

// SecretGuard recognises the Secrets of the operator: the platform identity,
// the root and tenant CAs, the gateway's certificate, worker SVIDs and
// onboarding bundles. Their keys mint or are identities, so they are never
// credentials of a source and never granted to the gateway, whatever a
// (possibly hostile) tenant names in credentialsSecretRef.
type SecretGuard struct {
	// Client reads SyncServices, Tenants and Secret metadata (the manager's cache).
	Client client.Client
	// Namespace is the operator namespace, where the platform's Secrets live.
	Namespace string
	// GatewayTLSSecret is the Secret of the gateway's certificate in Namespace ("" when none).
	GatewayTLSSecret string
}

// Refused says why the Secret name in namespace ns may not be granted to
// the gateway, "" when it may. Names are refused before their Secret exists
// (the operator may create it later), and existing Secrets by the marks the
// operator puts on its own.
func (g *SecretGuard) Refused(ctx context.Context, ns, name string) (string, error) {
	if ns == g.Namespace {
		switch {
		case name == platform.RootCASecret:
			return "it holds the platform root CA", nil
		case name == platform.IdentitySecret:
			return "it holds the platform identity", nil
		case strings.HasPrefix(name, platform.TenantCASecretPrefix):
			return "it holds a tenant CA", nil
		case g.GatewayTLSSecret != "" && name == g.GatewayTLSSecret:
			return "it holds the gateway's certificate", nil
		}
	}
	var sss v1alpha1.SyncServiceList
	if err := g.Client.List(ctx, &sss, client.InNamespace(ns)); err != nil {
		return "", fmt.Errorf("listing SyncServices in %s: %w", ns, err)
	}
	if len(sss.Items) > 0 {
		var ts v1alpha1.TenantList
		if err := g.Client.List(ctx, &ts); err != nil {
			return "", fmt.Errorf("listing tenants: %w", err)
		}
		for i := range sss.Items {
			ss := &sss.Items[i]
			if name == ss.Name+"-onboarding" || name == ss.Status.OnboardingSecretName {
				return fmt.Sprintf("it is the onboarding bundle of SyncService %s", ss.Name), nil
			}
			for _, t := range ts.Items {
				if name == (workload.Worker{SyncService: ss, TenantSlug: t.Spec.Slug}).IdentitySecretName() {
					return fmt.Sprintf("it is a worker identity of SyncService %s", ss.Name), nil
				}
			}
		}
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	switch err := g.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, meta); {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
	}
	if meta.Labels[platform.ManagedByLabel] == platform.ManagedBy {
		return "the operator manages it", nil
	}
	if _, ok := meta.Annotations[identityAnnotation]; ok {
		return "it holds an identity the operator issued", nil
	}
	for _, o := range meta.OwnerReferences {
		if o.Kind == "SyncService" && strings.HasPrefix(o.APIVersion, v1alpha1.GroupVersion.Group+"/") {
			return "it belongs to SyncService " + o.Name, nil
		}
	}
	return "", nil
}

// GatewayAccessReconciler keeps, in each tenant namespace whose
// IntegrationSources reference credentials Secrets, a Role granting the
// gateway get, list and watch on exactly those Secrets (resourceNames) and a
// RoleBinding of it to the gateway's subject. The gateway's own ClusterRole
// has no Secret access at all, so the CA keys and identities are out of its
// reach. The Role and RoleBinding are owned by the sources they serve
// (garbage collected with the last one) and deleted as soon as nothing is
// left to grant. Requests are keyed by namespace name.
type GatewayAccessReconciler struct {
	Client client.Client
	// Grants reads the Roles and RoleBindings named GatewayAccessName
	// (metadata only); Setup gives it a cache of those names only.
	Grants client.Reader
	Guard  *SecretGuard
	// Gateway is the subject the Roles are bound to: the gateway's ServiceAccount.
	Gateway rbacv1.Subject
}

// Reconcile implements reconcile.Reconciler.
func (r *GatewayAccessReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := req.Name
	names, owners, err := r.granted(ctx, ns)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(names) == 0 {
		return ctrl.Result{}, r.revoke(ctx, ns)
	}
	hash, err := grantHash(names, owners, r.Gateway)
	if err != nil {
		return ctrl.Result{}, err
	}
	labels := map[string]string{platform.ManagedByLabel: platform.ManagedBy, platform.ComponentLabel: "gateway-credentials"}
	annotations := map[string]string{grantAnnotation: hash}
	refs := make([]*applymetav1.OwnerReferenceApplyConfiguration, 0, len(owners))
	for _, o := range owners {
		refs = append(refs, applymetav1.OwnerReference().WithAPIVersion(v1alpha1.GroupVersion.String()).
			WithKind("IntegrationSource").WithName(o.Name).WithUID(o.UID))
	}
	if current, err := r.current(ctx, ns, "Role", hash); err != nil || !current {
		if err != nil {
			return ctrl.Result{}, err
		}
		role := applyrbacv1.Role(GatewayAccessName, ns).WithLabels(labels).WithAnnotations(annotations).
			WithOwnerReferences(refs...).
			WithRules(applyrbacv1.PolicyRule().WithAPIGroups("").WithResources("secrets").
				WithVerbs("get", "list", "watch").WithResourceNames(names...))
		if err := r.Client.Apply(ctx, role, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return ctrl.Result{}, fmt.Errorf("applying Role %s/%s: %w", ns, GatewayAccessName, err)
		}
	}
	if current, err := r.current(ctx, ns, "RoleBinding", hash); err != nil || !current {
		if err != nil {
			return ctrl.Result{}, err
		}
		subject := applyrbacv1.Subject().WithKind(r.Gateway.Kind).WithName(r.Gateway.Name)
		if r.Gateway.Namespace != "" {
			subject.WithNamespace(r.Gateway.Namespace)
		}
		if r.Gateway.APIGroup != "" {
			subject.WithAPIGroup(r.Gateway.APIGroup)
		}
		binding := applyrbacv1.RoleBinding(GatewayAccessName, ns).WithLabels(labels).WithAnnotations(annotations).
			WithOwnerReferences(refs...).
			WithRoleRef(applyrbacv1.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(GatewayAccessName)).
			WithSubjects(subject)
		if err := r.Client.Apply(ctx, binding, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return ctrl.Result{}, fmt.Errorf("applying RoleBinding %s/%s: %w", ns, GatewayAccessName, err)
		}
	}
	return ctrl.Result{}, nil
}

// granted returns the Secret names the gateway needs in ns (sorted) and the
// sources that reference them (sorted by name): those of live sources in a
// tenant namespace whose type takes credentials, minus the operator's own
// Secrets.
func (r *GatewayAccessReconciler) granted(ctx context.Context, ns string) ([]string, []*v1alpha1.IntegrationSource, error) {
	if _, found, err := tenantOfNamespace(ctx, r.Client, ns); err != nil || !found {
		return nil, nil, err // the gateway serves no source outside tenant namespaces
	}
	var srcs v1alpha1.IntegrationSourceList
	if err := r.Client.List(ctx, &srcs, client.InNamespace(ns)); err != nil {
		return nil, nil, fmt.Errorf("listing integration sources in %s: %w", ns, err)
	}
	names := map[string]bool{}
	var owners []*v1alpha1.IntegrationSource
	for i := range srcs.Items {
		src := &srcs.Items[i]
		if _, ok := v1alpha1.CredentialKey(src.Spec.Type); !ok || src.Spec.CredentialsSecretRef == nil || !src.DeletionTimestamp.IsZero() {
			continue
		}
		name := src.Spec.CredentialsSecretRef.Name
		allowed, known := names[name]
		if !known {
			why, err := r.Guard.Refused(ctx, ns, name)
			if err != nil {
				return nil, nil, err
			}
			allowed = why == ""
			names[name] = allowed
		}
		if allowed {
			owners = append(owners, src)
		}
	}
	var out []string
	for name, allowed := range names {
		if allowed {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	slices.SortFunc(owners, func(a, b *v1alpha1.IntegrationSource) int { return strings.Compare(a.Name, b.Name) })
	return out, owners, nil
}

// grantHash identifies a grant: the Secret names, the owners and the subject.
func grantHash(names []string, owners []*v1alpha1.IntegrationSource, subject rbacv1.Subject) (string, error) {
	uids := make([]string, 0, len(owners))
	for _, o := range owners {
		uids = append(uids, o.Name+"/"+string(o.UID))
	}
	raw, err := json.Marshal(struct {
		Names, Owners []string
		Subject       rbacv1.Subject
	}{names, uids, subject})
	if err != nil {
		return "", fmt.Errorf("hashing the gateway's grant: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16]), nil
}

// grantMeta is an empty metadata object of a Role or RoleBinding.
func grantMeta(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(rbacv1.SchemeGroupVersion.WithKind(kind))
	return m
}

// current says whether the Role or RoleBinding of ns already grants what hash names.
func (r *GatewayAccessReconciler) current(ctx context.Context, ns, kind, hash string) (bool, error) {
	m := grantMeta(kind)
	err := r.Grants.Get(ctx, types.NamespacedName{Namespace: ns, Name: GatewayAccessName}, m)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s %s/%s: %w", kind, ns, GatewayAccessName, err)
	}
	return m.DeletionTimestamp.IsZero() && m.Annotations[grantAnnotation] == hash, nil
}

// revoke deletes the Role and RoleBinding of ns, if there are any.
func (r *GatewayAccessReconciler) revoke(ctx context.Context, ns string) error {
	for _, kind := range []string{"RoleBinding", "Role"} {
		m := grantMeta(kind)
		if err := r.Grants.Get(ctx, types.NamespacedName{Namespace: ns, Name: GatewayAccessName}, m); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading %s %s/%s: %w", kind, ns, GatewayAccessName, err)
		}
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Client.Delete(ctx, m); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("revoking the gateway's access: deleting %s %s/%s: %w", kind, ns, GatewayAccessName, err)
		}
	}
	return nil
}

// SetupGatewayAccess registers, alone, the controller that grants the
// gateway's ServiceAccount (opts.GatewayServiceAccount in opts.Namespace)
// the credentials Secrets that sources reference, with the indexes it needs:
// for processes that run the gateway without the rest of the manager, such
// as benchmarks. Setup registers it with everything else.
func SetupGatewayAccess(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := setupIndexes(ctx, mgr); err != nil {
		return err
	}
	guard := &SecretGuard{Client: mgr.GetClient(), Namespace: opts.Namespace, GatewayTLSSecret: opts.GatewayTLSSecret}
	return setupGatewayAccess(mgr, opts, guard)
}

// setupGatewayAccess registers the grant controller and its cache, unless
// opts names no gateway ServiceAccount.
func setupGatewayAccess(mgr ctrl.Manager, opts Options, guard *SecretGuard) error {
	if opts.GatewayServiceAccount == "" {
		return nil
	}
	grants, err := NewGatewayAccessCache(mgr)
	if err != nil {
		return err
	}
	if err := mgr.Add(grants); err != nil {
		return fmt.Errorf("adding the cache of the gateway's grants: %w", err)
	}
	return (&GatewayAccessReconciler{
		Client: mgr.GetClient(), Grants: grants, Guard: guard,
		Gateway: rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: opts.GatewayServiceAccount, Namespace: opts.Namespace},
	}).SetupWithManager(mgr, grants)
}

// NewGatewayAccessCache is the cache of the Roles and RoleBindings named
// GatewayAccessName, in every namespace: it lists and watches them by name
// (field selector metadata.name), which the manager's RBAC allows, rather
// than every Role of the cluster, which it does not.
func NewGatewayAccessCache(mgr ctrl.Manager) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		DefaultFieldSelector: fields.OneTermEqualSelector("metadata.name", GatewayAccessName),
		DefaultTransform:     cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the cache of the gateway's grants: %w", err)
	}
	return c, nil
}

// SetupWithManager registers the controller; grants is the cache of
// NewGatewayAccessCache, already added to mgr.
func (r *GatewayAccessReconciler) SetupWithManager(mgr ctrl.Manager, grants cache.Cache) error {
	own := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
	})
	// Every namespace with SyncServices: a new Tenant names new worker identities there.
	withSyncServices := func(ctx context.Context) []reconcile.Request {
		var sss v1alpha1.SyncServiceList
		if err := r.Client.List(ctx, &sss); err != nil {
			return nil
		}
		seen := map[string]bool{}
		for _, ss := range sss.Items {
			seen[ss.Namespace] = true
		}
		out := make([]reconcile.Request, 0, len(seen))
		for _, ns := range slices.Sorted(maps.Keys(seen)) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}})
		}
		return out
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("gatewayaccess").
		Watches(&v1alpha1.IntegrationSource{}, own, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, deletionStarted()))).
		// A Secret that appears or changes its marks may be one of the operator's.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var srcs v1alpha1.IntegrationSourceList
			if err := r.Client.List(ctx, &srcs, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexSourceSecret: o.GetName()}); err != nil || len(srcs.Items) == 0 {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		}), builder.OnlyMetadata, builder.WithPredicates(marksChanged())).
		Watches(&v1alpha1.SyncService{}, own, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Watches(&v1alpha1.Tenant{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			out := withSyncServices(ctx)
			var nss corev1.NamespaceList
			if err := r.Client.List(ctx, &nss, client.MatchingLabels{v1alpha1.TenantLabel: o.(*v1alpha1.Tenant).Spec.Slug}); err == nil {
				for _, ns := range nss.Items {
					out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns.Name}})
				}
			}
			return out
		}), builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, deletionStarted()))).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetName()}}}
		}), builder.WithPredicates(labelChanged())).
		WatchesRawSource(source.Kind[client.Object](grants, grantMeta("Role"), own)).
		WatchesRawSource(source.Kind[client.Object](grants, grantMeta("RoleBinding"), own)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up gatewayaccess controller: %w", err)
	}
	return nil
}

// deletionStarted passes the update that sets an object's deletion timestamp.
func deletionStarted() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// marksChanged passes the updates of a Secret's labels, annotations or
// owners (what SecretGuard looks at), not those of its data.
func marksChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return !maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!slices.EqualFunc(o.GetOwnerReferences(), n.GetOwnerReferences(), func(a, b metav1.OwnerReference) bool { return a.UID == b.UID })
	}}
}
