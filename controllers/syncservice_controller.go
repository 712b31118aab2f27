package controllers

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// The SyncService controller is split the way cluster-api splits its
// controllers: this file reconciles (tenant, pause, service type) and
// finalizes; syncservice_workers.go runs SaaS workers (Deployments,
// identities); syncservice_onboarding.go issues OnPrem onboarding bundles,
// with edgecerts.go and edgerenewal.go for their certificates; and
// syncservice_status.go derives and writes the status.

// spireFinalizer removes a SyncService's cluster-scoped ClusterSPIFFEIDs,
// which owner references cannot reach.
const spireFinalizer = "integrations.serviceradar.io/clusterspiffeids"

var clusterSPIFFEIDGK = workload.ClusterSPIFFEIDGVK.GroupKind()

// SyncServiceReconciler runs SaaS workers (one per tenant with sources) and
// issues OnPrem onboarding bundles, and reports phase and workers.
type SyncServiceReconciler struct {
	Client client.Client
	// Reader reads past the cache (the manager's API reader): a certificate
	// request is answered only when the cached SyncService is the current
	// one, so that no request is signed twice. Nil reads through Client.
	Reader client.Reader
	Store  *platform.Store
	Events events.EventRecorder
	// GatewayAddress is written into worker bootstraps.
	GatewayAddress string
	// GatewayServerName is the name in-cluster workers check on the gateway's certificate.
	GatewayServerName string
	// EdgeGatewayAddress is the default address of the gateway for OnPrem
	// workers (spec.gatewayAddress overrides it); empty: none.
	EdgeGatewayAddress string
	// GatewayCertNames are the names on the gateway's certificate when the
	// manager issues it: an edge address whose host is not among them is
	// refused. Nil: the certificate is not the manager's, and is not checked.
	GatewayCertNames []string
	TrustDomain      spiffeid.TrustDomain
	WorkerImage      string
	SVIDLifetime     time.Duration
	EdgeLifetime     time.Duration
	// GatewayTrust is what the gateway verifies workers' SVIDs against.
	GatewayTrust GatewayTrust
	// SPIREClassName is the className of rendered ClusterSPIFFEIDs (empty: none).
	SPIREClassName string
	Now            func() time.Time
}

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts;configmaps,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;patch;delete
// +kubebuilder:rbac:groups=spire.spiffe.io,resources=clusterspiffeids,verbs=get;list;watch;create;patch;delete

func (r *SyncServiceReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// spireAvailable reports whether the ClusterSPIFFEID CRD is installed.
func (r *SyncServiceReconciler) spireAvailable() bool {
	_, err := r.Client.RESTMapper().RESTMapping(clusterSPIFFEIDGK, workload.ClusterSPIFFEIDGVK.Version)
	return err == nil
}

// outcome collects what one reconcile found.
type outcome struct {
	ready           bool
	reason, message string
	workers         []v1alpha1.WorkerStatus
	onboarding      string
	// edgeCerts and edgeSince are status.edgeCertificates and
	// status.edgeIdentitySince of an OnPrem service, when edgeKnown.
	edgeKnown bool
	edgeCerts []v1alpha1.EdgeCertificate
	edgeSince *metav1.Time
	// renewal is a new answer to the edge's certificate request, when one
	// was answered this time.
	renewal *v1alpha1.EdgeCertificateRenewal
	requeue time.Duration
	notes   []string
}

func (o *outcome) requeueIn(d time.Duration) {
	if d > 0 && (o.requeue == 0 || d < o.requeue) {
		o.requeue = d
	}
}

// Reconcile implements reconcile.Reconciler.
func (r *SyncServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ss := &v1alpha1.SyncService{}
	if err := r.Client.Get(ctx, req.NamespacedName, ss); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ss.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, ss)
	}
	out := &outcome{ready: true, reason: v1alpha1.ReasonReconciled}
	tenant, found, err := tenantOfNamespace(ctx, r.Client, ss.Namespace)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case !found:
		out.ready, out.reason, out.message = false, v1alpha1.ReasonTenantNotFound, v1alpha1.TenantMissing(ss.Namespace)
	case ss.Spec.Platform && !tenant.Spec.Platform:
		out.ready, out.reason, out.message = false, v1alpha1.ReasonInvalidSpec,
			fmt.Sprintf("platform SyncServices belong in a namespace of the platform tenant, not of %q", tenant.Spec.Slug)
	case ss.Spec.Paused:
		out.reason, out.message = v1alpha1.ReasonPaused, "paused: workers, identities and bundles are left as they are"
		if out.workers, err = r.observedWorkers(ctx, ss); err != nil {
			return ctrl.Result{}, err
		}
	case ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem:
		if err := r.reconcileOnPrem(ctx, ss, tenant, out); err != nil {
			return ctrl.Result{}, err
		}
	default:
		if err := r.reconcileSaaS(ctx, ss, tenant, out); err != nil {
			return ctrl.Result{}, err
		}
	}
	// An edge that renews its own certificate: answered only for a served
	// OnPrem SyncService (an edge address problem leaves its identity fine).
	served := found && ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem && !ss.Spec.Paused &&
		(out.ready || out.reason == v1alpha1.ReasonEdgeGatewayAddressUnknown || out.reason == v1alpha1.ReasonEdgeGatewayAddressNotOnCertificate)
	if err := r.answerRenewal(ctx, ss, tenant, served, out); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.writeStatus(ctx, ss, out); apierrors.IsConflict(err) {
		// Read stale: the next reconcile reads the change.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: out.requeue}, nil
}

// duplicateIdentity returns "<namespace>/<name>" of another SyncService of
// the tenant (slug, the tenant of ss's namespace) whose workers have the
// identities of ss's, or "". Identities without the namespace are those of
// OnPrem SyncServices (the edge CN <name>.<partition>.<slug>.serviceradar
// has no room for it) and of platform SyncServices (component id
// <name>-<tenant>, the same as before namespaces counted): two of a kind with
// one name and partition in two namespaces of the tenant are one identity,
// which the gateway refuses as ambiguous, so both are refused here too.
// Other SaaS SyncServices have the namespace in their component id.
func (r *SyncServiceReconciler) duplicateIdentity(ctx context.Context, ss *v1alpha1.SyncService, slug string) (string, error) {
	onPrem := ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem
	if !onPrem && !ss.Spec.Platform {
		return "", nil
	}
	var all v1alpha1.SyncServiceList
	if err := r.Client.List(ctx, &all); err != nil {
		return "", fmt.Errorf("listing SyncServices: %w", err)
	}
	for _, o := range all.Items {
		if o.Namespace == ss.Namespace || o.Name != ss.Name || (o.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem) != onPrem ||
			(!onPrem && !o.Spec.Platform) || o.Spec.Partition != ss.Spec.Partition || !o.DeletionTimestamp.IsZero() {
			continue
		}
		ns := &corev1.Namespace{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: o.Namespace}, ns); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", fmt.Errorf("reading namespace %q: %w", o.Namespace, err)
		}
		if ns.Labels[v1alpha1.TenantLabel] == slug {
			return o.Namespace + "/" + o.Name, nil
		}
	}
	return "", nil
}

// finalize deletes the SyncService's ClusterSPIFFEIDs and releases it.
func (r *SyncServiceReconciler) finalize(ctx context.Context, ss *v1alpha1.SyncService) error {
	if !controllerutil.ContainsFinalizer(ss, spireFinalizer) {
		return nil
	}
	if r.spireAvailable() {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(workload.ClusterSPIFFEIDGVK.GroupVersion().WithKind("ClusterSPIFFEIDList"))
		if err := r.Client.List(ctx, list, client.MatchingLabels{workload.SyncServiceLabel: ss.Name}); err != nil {
			return fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
		}
		for i := range list.Items {
			item := &list.Items[i]
			if item.Labels[workload.SyncServiceNamespaceLabel] != ss.Namespace {
				continue
			}
			item.SetGroupVersionKind(workload.ClusterSPIFFEIDGVK)
			if err := r.Client.Delete(ctx, item); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting ClusterSPIFFEID %s: %w", item.Name, err)
			}
		}
	}
	patch := client.MergeFromWithOptions(ss.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(ss, spireFinalizer)
	if err := r.Client.Patch(ctx, ss, patch); err != nil {
		return fmt.Errorf("removing finalizer of SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
	}
	return nil
}

// SetupWithManager registers the controller.
func (r *SyncServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.SyncServiceList
		if err := r.Client.List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
		}
		return out
	})
	err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.SyncService{}).
		Named("syncservice").
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Watches(&v1alpha1.IntegrationSource{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: o.(*v1alpha1.IntegrationSource).SyncServiceKey()}}
		})).
		Watches(&corev1.Namespace{}, all, builder.WithPredicates(labelChanged())).
		// An OnPrem SyncService of the same name elsewhere may make this
		// one's edge identity ambiguous, or no longer.
		Watches(&v1alpha1.SyncService{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list v1alpha1.SyncServiceList
			if err := r.Client.List(ctx, &list); err != nil {
				return nil
			}
			var out []reconcile.Request
			for _, s := range list.Items {
				if s.Name == o.GetName() && s.Namespace != o.GetNamespace() {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
				}
			}
			return out
		})).
		// Only a Tenant's spec (slug, platform) matters here, not its status.
		Watches(&v1alpha1.Tenant{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up syncservice controller: %w", err)
	}
	return nil
}

// labelChanged passes creations, deletions and label changes only.
func labelChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
	}}
}

// issueCertSecret writes a certificate Secret of the SyncService (a worker
// SVID or the onboarding bundle) that it owns, requeues for its renewal and
// records an event.
func (r *SyncServiceReconciler) issueCertSecret(ctx context.Context, ss *v1alpha1.SyncService, s *certSecret, w issuedSecret, out *outcome) error {
	w.Owner = workload.OwnerReference(ss)
	renewAt, err := s.write(ctx, r.Client, w)
	if err != nil {
		return err
	}
	out.requeueIn(renewAt.Sub(r.now()))
	if r.Events != nil {
		r.Events.Eventf(ss, nil, corev1.EventTypeNormal, "CertificateIssued", "Issue",
			"issued %s for %s, renewal due %s", s.Key.Name, s.Identity, renewAt.UTC().Format(time.RFC3339))
	}
	return nil
}
