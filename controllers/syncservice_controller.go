package controllers

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
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
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// SyncService condition reasons.
const (
	ReasonHeartbeat       = "HeartbeatReceived"
	ReasonNoHeartbeat     = "NoHeartbeat"
	ReasonWorkersStarting = "WorkersStarting"
	ReasonWorkersReady    = "WorkersReady"
	ReasonNoWorkers       = "NoWorkers"
	// ReasonSPIRECRDMissing means the SyncService asks for SPIRE identities,
	// the gateway trusts only SPIRE, and the ClusterSPIFFEID CRD is not
	// installed: operator-issued SVIDs are no fallback, so no workers run.
	ReasonSPIRECRDMissing = "ClusterSPIFFEIDMissing"
	// ReasonGatewayTrustMismatch means the workers would get SVIDs the
	// gateway does not trust (SPIRE SVIDs while the gateway trusts only the
	// operator's root CA, or operator-issued SVIDs while it trusts only
	// SPIRE): no workers run until one of the two settings changes.
	ReasonGatewayTrustMismatch = "GatewayTrustMismatch"
	// ReasonDuplicateIdentity means another OnPrem SyncService of the tenant
	// (or another platform SyncService) has the same name and partition, so
	// the same identity: neither gets a certificate, runs workers or is
	// served until one is renamed or deleted.
	ReasonDuplicateIdentity = "DuplicateIdentity"
	// ReasonTenantCAPending means the tenant's certificate authority is not
	// in place yet (the Tenant is not Ready).
	ReasonTenantCAPending = "TenantCAPending"
	// ReasonEdgeGatewayAddressUnknown: an OnPrem SyncService has no address
	// at which its edge worker can reach the gateway (spec.gatewayAddress, or
	// the manager's --edge-gateway-address), so no bundle is issued.
	ReasonEdgeGatewayAddressUnknown = "EdgeGatewayAddressUnknown"
	// ReasonEdgeGatewayAddressNotOnCertificate: the host of that address is
	// not on the gateway certificate the manager issues.
	ReasonEdgeGatewayAddressNotOnCertificate = "EdgeGatewayAddressNotOnCertificate"
)

// OnlineWindow is how recent a heartbeat must be for a SyncService to be Online.
const OnlineWindow = 2 * time.Minute

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
		out.ready, out.reason, out.message = false, v1alpha1.ReasonTenantNotFound, tenantMissing(ss.Namespace)
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
		(out.ready || out.reason == ReasonEdgeGatewayAddressUnknown || out.reason == ReasonEdgeGatewayAddressNotOnCertificate)
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

// sourceTenants returns the slugs of the tenants whose sources this SaaS
// SyncService may serve and serves.
func (r *SyncServiceReconciler) sourceTenants(ctx context.Context, ss *v1alpha1.SyncService, own *v1alpha1.Tenant) ([]string, error) {
	var sources v1alpha1.IntegrationSourceList
	if err := r.Client.List(ctx, &sources, client.MatchingFields{IndexSourceSyncService: ss.Namespace + "/" + ss.Name}); err != nil {
		return nil, fmt.Errorf("listing sources of SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
	}
	seen := map[string]bool{}
	for _, src := range sources.Items {
		if !src.DeletionTimestamp.IsZero() {
			continue
		}
		t, ok, err := tenantOfNamespace(ctx, r.Client, src.Namespace)
		if err != nil {
			return nil, err
		}
		if !ok || (!ss.Spec.Platform && t.Spec.Slug != own.Spec.Slug) {
			continue // such a source is not Ready and is never served
		}
		seen[t.Spec.Slug] = true
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

func (r *SyncServiceReconciler) reconcileSaaS(ctx context.Context, ss *v1alpha1.SyncService, own *v1alpha1.Tenant, out *outcome) error {
	if dup, err := r.duplicateIdentity(ctx, ss, own.Spec.Slug); err != nil {
		return err
	} else if dup != "" {
		// The gateway refuses both as ambiguous: run no workers for either.
		if err := r.pruneWorkers(ctx, ss, map[string]bool{}); err != nil {
			return err
		}
		out.ready, out.reason, out.message = false, ReasonDuplicateIdentity, fmt.Sprintf(
			"platform SyncService %s has the same name and partition, so its workers have the same identities: neither runs workers or is served until one is renamed or deleted", dup)
		return nil
	}
	slugs, err := r.sourceTenants(ctx, ss, own)
	if err != nil {
		return err
	}
	wantSPIRE := ss.Spec.Identity.Provider != v1alpha1.IdentityProviderCertificate
	useSPIRE := wantSPIRE && r.spireAvailable()
	if reason, message := r.untrusted(wantSPIRE, useSPIRE); reason != "" {
		// The gateway would refuse every worker: run none.
		if err := r.pruneWorkers(ctx, ss, map[string]bool{}); err != nil {
			return err
		}
		out.ready, out.reason, out.message = false, reason, message
		if reason == ReasonSPIRECRDMissing {
			out.requeueIn(time.Minute) // installing a CRD does not enqueue SyncServices
		}
		return nil
	}
	if wantSPIRE && !useSPIRE {
		out.notes = append(out.notes, "the ClusterSPIFFEID CRD is not installed; workers use operator-issued SVIDs")
	}
	if useSPIRE && !controllerutil.ContainsFinalizer(ss, spireFinalizer) {
		patch := client.MergeFromWithOptions(ss.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(ss, spireFinalizer)
		if err := r.Client.Patch(ctx, ss, patch); err != nil {
			return fmt.Errorf("adding finalizer to SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
		}
	}
	keep := map[string]bool{}
	for _, slug := range slugs {
		w, err := r.worker(ss, slug, useSPIRE)
		if err != nil {
			return err
		}
		keep[w.ObjectName()] = true
		if useSPIRE {
			keep[w.ClusterSPIFFEID().GetName()] = true
		} else {
			keep[w.IdentitySecretName()] = true
		}
		if err := r.applyWorker(ctx, w, out); err != nil {
			return err
		}
	}
	if err := r.pruneWorkers(ctx, ss, keep); err != nil {
		return err
	}
	out.workers, err = r.observedWorkers(ctx, ss)
	if err != nil {
		return err
	}
	out.message = fmt.Sprintf("%d worker(s) for tenants %v", len(slugs), slugs)
	if len(out.notes) > 0 {
		out.message += "; " + out.notes[0]
	}
	return nil
}

// untrusted returns the reason and message of a SaaS SyncService whose
// workers would get SVIDs the gateway does not trust, or "" when it trusts
// them. wantSPIRE is the SyncService's provider being spire, useSPIRE that
// and the ClusterSPIFFEID CRD being installed. A gateway that trusts the
// operator's root verifies SVIDs against its CA files only; one that trusts
// SPIRE verifies SVIDs against the Workload API's bundle only (the edge CA
// it may be given covers certificates without a SPIFFE ID, not SVIDs).
func (r *SyncServiceReconciler) untrusted(wantSPIRE, useSPIRE bool) (reason, message string) {
	switch trust := r.gatewayTrust(); {
	case trust == GatewayTrustOperator && useSPIRE:
		return ReasonGatewayTrustMismatch, fmt.Sprintf("workers would get SPIRE SVIDs (spec.identity.provider %q and the ClusterSPIFFEID CRD is installed), "+
			"but the gateway trusts only the operator's root CA (manager --gateway-trust=%s, chart value spire.enabled=false): "+
			"set spec.identity.provider to %q, or install the chart with spire.enabled=true; no workers run until then",
			v1alpha1.IdentityProviderSPIRE, GatewayTrustOperator, v1alpha1.IdentityProviderCertificate)
	case trust == GatewayTrustSPIRE && !wantSPIRE:
		return ReasonGatewayTrustMismatch, fmt.Sprintf("workers would get operator-issued SVIDs (spec.identity.provider %q), "+
			"but the gateway trusts only SPIRE's trust bundle (manager --gateway-trust=%s, chart value spire.enabled=true): "+
			"set spec.identity.provider to %q, or install the chart with spire.enabled=false; no workers run until then",
			v1alpha1.IdentityProviderCertificate, GatewayTrustSPIRE, v1alpha1.IdentityProviderSPIRE)
	case trust == GatewayTrustSPIRE && !useSPIRE:
		return ReasonSPIRECRDMissing, fmt.Sprintf("spec.identity.provider is %q but the ClusterSPIFFEID CRD of the SPIRE controller manager is not installed, "+
			"and the gateway trusts only SPIRE's trust bundle (manager --gateway-trust=%s, chart value spire.enabled=true), "+
			"so operator-issued SVIDs are no fallback: install SPIRE's CRDs and controller manager; no workers run until then",
			v1alpha1.IdentityProviderSPIRE, GatewayTrustSPIRE)
	}
	return "", ""
}

func (r *SyncServiceReconciler) gatewayTrust() GatewayTrust {
	if r.GatewayTrust == "" {
		return GatewayTrustOperator
	}
	return r.GatewayTrust
}

func (r *SyncServiceReconciler) worker(ss *v1alpha1.SyncService, slug string, useSPIRE bool) (workload.Worker, error) {
	component := workload.ComponentID(ss, slug)
	id, err := identity.FormatSPIFFEID(r.TrustDomain, identity.ComponentSync, slug, ss.Spec.Partition, component)
	if err != nil {
		return workload.Worker{}, fmt.Errorf("worker identity for tenant %q: %w", slug, err)
	}
	image := r.WorkerImage
	if ss.Spec.Image != "" {
		image = ss.Spec.Image
	}
	w := workload.Worker{SyncService: ss, TenantSlug: slug, ComponentID: component, Image: image, SPIRE: useSPIRE, SPIFFEID: id.String(),
		SPIREClassName: r.SPIREClassName}
	w.Bootstrap = workload.Bootstrap{GatewayAddress: r.GatewayAddress, ComponentID: component, Partition: ss.Spec.Partition, TenantSlug: slug}
	if useSPIRE {
		w.Bootstrap.Identity = workload.BootstrapIdentity{Source: workload.IdentityWorkloadAPI, WorkloadAPISocket: workload.WorkloadAPISock, SPIFFEID: id.String()}
	} else {
		w.Bootstrap.Identity = workload.FileIdentity(workload.IdentityDir)
		w.Bootstrap.Identity.SPIFFEID = id.String()
	}
	return w, nil
}

// applyIfChanged server-side applies obj unless the live object carries the
// same rendered hash, so an unchanged worker causes no write.
func (r *SyncServiceReconciler) applyIfChanged(ctx context.Context, live client.Object, key types.NamespacedName, cfg runtime.ApplyConfiguration, hash string) error {
	if err := r.Client.Get(ctx, key, live); err == nil && live.GetAnnotations()[workload.HashAnnotation] == hash {
		return nil
	} else if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return fmt.Errorf("reading %T %s: %w", live, key, err)
	}
	if err := r.Client.Apply(ctx, cfg, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %T %s: %w", live, key, err)
	}
	return nil
}

func (r *SyncServiceReconciler) applyWorker(ctx context.Context, w workload.Worker, out *outcome) error {
	ns := w.SyncService.Namespace
	key := types.NamespacedName{Namespace: ns, Name: w.ObjectName()}
	hashed := map[string]string{}
	sa := w.ServiceAccount()
	hashed[workload.HashAnnotation] = workload.Hash(sa)
	if err := r.applyIfChanged(ctx, &corev1.ServiceAccount{}, key, sa.WithAnnotations(hashed), hashed[workload.HashAnnotation]); err != nil {
		return err
	}
	cm, err := w.ConfigMap()
	if err != nil {
		return err
	}
	cmHash := workload.Hash(cm)
	if err := r.applyIfChanged(ctx, &corev1.ConfigMap{}, key, cm.WithAnnotations(map[string]string{workload.HashAnnotation: cmHash}), cmHash); err != nil {
		return err
	}
	if w.SPIRE {
		u := w.ClusterSPIFFEID()
		h := workload.Hash(u.Object)
		u.SetAnnotations(map[string]string{workload.HashAnnotation: h})
		live := &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(u.GroupVersionKind())
		if err := r.applyIfChanged(ctx, live, types.NamespacedName{Name: u.GetName()}, client.ApplyConfigurationFromUnstructured(u), h); err != nil {
			return err
		}
	} else {
		if err := r.ensureSVIDSecret(ctx, w, out); err != nil {
			return err
		}
	}
	if err := r.recreateStrategy(ctx, key); err != nil {
		return err
	}
	dep := w.Deployment(cmHash)
	depHash := workload.Hash(dep)
	return r.applyIfChanged(ctx, &appsv1.Deployment{}, key, dep.WithAnnotations(map[string]string{workload.HashAnnotation: depHash}), depHash)
}

// recreateStrategy moves a worker Deployment rendered before workers used
// the Recreate strategy onto it. Such a Deployment holds the rollingUpdate
// the API server defaulted, which no field manager owns, so applying
// type Recreate alone would be refused ("may not be specified when strategy
// type is 'Recreate'"). Once moved, this reads the cache and writes nothing.
func (r *SyncServiceReconciler) recreateStrategy(ctx context.Context, key types.NamespacedName) error {
	live := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, key, live); apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading Deployment %s: %w", key, err)
	}
	if live.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return nil
	}
	patch := []byte(`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}`)
	if err := r.Client.Patch(ctx, live, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("moving Deployment %s to the Recreate strategy: %w", key, err)
	}
	return nil
}

// secretMeta reads a Secret's metadata from the cache: Secret contents are never cached.
func (r *SyncServiceReconciler) secretMeta(ctx context.Context, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Client.Get(ctx, key, m); err != nil {
		return nil, err //nolint:wrapcheck // callers test for NotFound
	}
	return m, nil
}

// needsIssue says whether a certificate Secret must be (re)issued: missing,
// issued for another identity or by another CA key (issuer, when not
// empty), or past its renewal time.
func (r *SyncServiceReconciler) needsIssue(ctx context.Context, key types.NamespacedName, identityName, issuer string, want map[string]string, out *outcome) (bool, error) {
	m, err := r.secretMeta(ctx, key)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	ann := m.GetAnnotations()
	renewAt, ok := parseTime(ann[workload.RenewAtAnnotation])
	if !ok || ann[identityAnnotation] != identityName || (issuer != "" && ann[issuerAnnotation] != issuer) {
		return true, nil
	}
	for k, v := range want {
		if ann[k] != v {
			return true, nil
		}
	}
	if left := renewAt.Sub(r.now()); left > 0 {
		out.requeueIn(left)
		return false, nil
	}
	return true, nil
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// identityAnnotation records which identity a certificate Secret holds.
const identityAnnotation = "integrations.serviceradar.io/identity"

// issuerAnnotation records the KeyFingerprint of the CA that issued an edge
// certificate: a tenant CA replaced (a Tenant deleted and created again)
// means the bundle is issued again.
const issuerAnnotation = "integrations.serviceradar.io/issuer"

// gatewayAddressAnnotation records the gateway address an onboarding bundle
// was rendered with: another address means the bundle is rendered again.
const gatewayAddressAnnotation = "integrations.serviceradar.io/gateway-address"

func (r *SyncServiceReconciler) writeCertSecret(ctx context.Context, ss *v1alpha1.SyncService, name string, labels map[string]string,
	identityName string, issued *ca.Issued, root *ca.Authority, extra map[string][]byte, extraAnn map[string]string, out *outcome) error {
	keyPEM, err := issued.Key.MarshalPEM()
	if err != nil {
		return err
	}
	data := map[string][]byte{corev1.TLSCertKey: issued.CertPEM(), corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": root.CertPEM()}
	for k, v := range extra {
		data[k] = v
	}
	renewAt := ca.RenewAt(issued.Cert)
	ann := map[string]string{workload.RenewAtAnnotation: renewAt.UTC().Format(time.RFC3339), identityAnnotation: identityName}
	if len(issued.Chain) > 0 {
		ann[issuerAnnotation] = identity.KeyFingerprint(issued.Chain[0])
	}
	maps.Copy(ann, extraAnn)
	sec := applycorev1.Secret(name, ss.Namespace).
		WithLabels(labels).
		WithAnnotations(ann).
		WithOwnerReferences(workload.OwnerReference(ss)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
	if err := r.Client.Apply(ctx, sec, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying Secret %s/%s: %w", ss.Namespace, name, err)
	}
	out.requeueIn(renewAt.Sub(r.now()))
	if r.Events != nil {
		r.Events.Eventf(ss, nil, corev1.EventTypeNormal, "CertificateIssued", "Issue",
			"issued %s for %s, renewal due %s", name, identityName, renewAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func (r *SyncServiceReconciler) ensureSVIDSecret(ctx context.Context, w workload.Worker, out *outcome) error {
	key := types.NamespacedName{Namespace: w.SyncService.Namespace, Name: w.IdentitySecretName()}
	need, err := r.needsIssue(ctx, key, w.SPIFFEID, "", nil, out)
	if err != nil || !need {
		return err
	}
	root, err := r.Store.RootCA(ctx)
	if err != nil {
		return err
	}
	id, err := spiffeid.FromString(w.SPIFFEID)
	if err != nil {
		return fmt.Errorf("worker SPIFFE ID %q: %w", w.SPIFFEID, err)
	}
	issued, err := root.IssueSVID(id, r.SVIDLifetime)
	if err != nil {
		return err
	}
	return r.writeCertSecret(ctx, w.SyncService, key.Name, w.Labels(), w.SPIFFEID, issued, root, nil, nil, out)
}

func (r *SyncServiceReconciler) reconcileOnPrem(ctx context.Context, ss *v1alpha1.SyncService, tenant *v1alpha1.Tenant, out *outcome) error {
	name := ss.Name + "-onboarding"
	out.onboarding = name
	cn, cnErr := identity.FormatCommonName(ss.Name, ss.Spec.Partition, tenant.Spec.Slug)
	if cnErr != nil {
		// The name cannot be an edge identity: a spec problem for the user, not a retry.
		out.ready, out.reason, out.message = false, v1alpha1.ReasonInvalidSpec, cnErr.Error()
		return nil //nolint:nilerr // reported in the Ready condition
	}
	if dup, err := r.duplicateIdentity(ctx, ss, tenant.Spec.Slug); err != nil {
		return err
	} else if dup != "" {
		out.ready, out.reason, out.message = false, ReasonDuplicateIdentity, fmt.Sprintf(
			"SyncService %s of the same tenant has the same name and partition, so the same edge identity %s: neither is issued a certificate or served until one is renamed or deleted", dup, cn)
		return nil
	}
	address, serverName, reason, problem := r.edgeAddress(ss)
	if problem != "" {
		// An existing bundle is left as it is: it may be what an edge runs.
		out.ready, out.reason, out.message = false, reason, problem
		return nil
	}
	issuer := tenant.Status.CAFingerprint
	if issuer == "" {
		out.ready, out.reason, out.message = false, ReasonTenantCAPending, fmt.Sprintf("waiting for the certificate authority of tenant %q", tenant.Spec.Slug)
		out.requeueIn(5 * time.Second)
		return nil
	}
	out.message = fmt.Sprintf("onboarding bundle in Secret %s for edge identity %s, reaching the gateway at %s", name, cn, address)
	key := types.NamespacedName{Namespace: ss.Namespace, Name: name}
	prev, err := r.secretMeta(ctx, key)
	switch {
	case apierrors.IsNotFound(err):
		prev = nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	// A bundle for another gateway address is issued again.
	addrAnn := map[string]string{gatewayAddressAnnotation: address}
	need, err := r.needsIssue(ctx, key, cn, issuer, addrAnn, out)
	if err != nil {
		return err
	}
	if !need {
		out.edgeKnown = true
		out.edgeCerts, out.edgeSince = edgeStatus(prev.GetAnnotations(), ss.Status.EdgeCertificates, r.now())
		return nil
	}
	tca, err := r.Store.TenantCA(ctx, tenant.Spec.Slug)
	if err != nil {
		return err
	}
	if identity.KeyFingerprint(tca.Cert) != issuer {
		// The Tenant's status is behind its CA (or ahead of this read): issue
		// only under the CA the gateway trusts.
		out.ready, out.reason, out.message = false, ReasonTenantCAPending, fmt.Sprintf("waiting for the certificate authority of tenant %q", tenant.Spec.Slug)
		out.requeueIn(5 * time.Second)
		return nil
	}
	root, err := r.Store.RootCA(ctx)
	if err != nil {
		return err
	}
	issued, err := tca.IssueEdgeClient(ss.Name, ss.Spec.Partition, tenant.Spec.Slug, r.EdgeLifetime)
	if err != nil {
		return err
	}
	// No bundle in place (the first, or its Secret deleted): a fresh
	// identity, and every certificate issued before it is refused.
	fresh := prev == nil
	if fresh {
		if err := issuedTooSoon(issued, ss.Status.EdgeCertificates); err != nil {
			out.notes = append(out.notes, err.Error())
			out.requeueIn(time.Second)
			return nil
		}
	}
	var prevAnn map[string]string
	if prev != nil {
		prevAnn = prev.GetAnnotations()
	}
	certAnn := edgeAnnotations(issued, prevAnn, fresh)
	maps.Copy(certAnn, addrAnn)
	out.edgeKnown = true
	out.edgeCerts, out.edgeSince = edgeStatus(certAnn, ss.Status.EdgeCertificates, r.now())
	boot := workload.Bootstrap{
		GatewayAddress: address, ComponentID: ss.Name, Partition: ss.Spec.Partition, TenantSlug: tenant.Spec.Slug,
		Identity: workload.FileIdentity("."),
	}
	boot.Identity.ServerName = serverName
	cfg, err := boot.JSON()
	if err != nil {
		return err
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "sync-operator", workload.SyncServiceLabel: ss.Name}
	return r.writeCertSecret(ctx, ss, name, labels, cn, issued, root, map[string][]byte{"config.json": cfg}, certAnn, out)
}

// edgeAddress is the address an OnPrem SyncService's worker dials and the
// name it checks on the gateway's certificate (the host of that address), or
// why there is none usable: no address configured, or a host the gateway's
// certificate does not name (the worker would refuse the gateway).
func (r *SyncServiceReconciler) edgeAddress(ss *v1alpha1.SyncService) (address, serverName, reason, problem string) {
	address, field := ss.Spec.GatewayAddress, "spec.gatewayAddress"
	if address == "" {
		address, field = r.EdgeGatewayAddress, "the manager's --edge-gateway-address (chart gateway.external.address)"
	}
	if address == "" {
		return "", "", ReasonEdgeGatewayAddressUnknown, fmt.Sprintf("no onboarding bundle: the address at which the edge worker reaches the gateway is unknown; "+
			"set spec.gatewayAddress, or the chart's gateway.external.address for every OnPrem SyncService (the in-cluster address %s is not reachable from an edge site)", r.GatewayAddress)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return "", "", v1alpha1.ReasonInvalidSpec, fmt.Sprintf("%s %q must be host:port", field, address)
	}
	if r.GatewayCertNames != nil && !slices.ContainsFunc(r.GatewayCertNames, func(n string) bool { return strings.EqualFold(n, host) }) {
		return "", "", ReasonEdgeGatewayAddressNotOnCertificate, fmt.Sprintf("no onboarding bundle: the host %q of %s is not on the gateway's certificate (%s), so the edge worker would refuse the gateway; "+
			"add it to the chart's gateway.tls.dnsNames (manager --gateway-dns-names)", host, field, strings.Join(r.GatewayCertNames, ", "))
	}
	return address, host, "", ""
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

// observedWorkers reports the worker Deployments of a SyncService.
func (r *SyncServiceReconciler) observedWorkers(ctx context.Context, ss *v1alpha1.SyncService) ([]v1alpha1.WorkerStatus, error) {
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.InNamespace(ss.Namespace), client.MatchingLabels{workload.SyncServiceLabel: ss.Name}); err != nil {
		return nil, fmt.Errorf("listing worker Deployments: %w", err)
	}
	var out []v1alpha1.WorkerStatus
	for _, d := range deps.Items {
		slug := d.Labels[workload.WorkerTenantLabel]
		desired := int32(1)
		if d.Spec.Replicas != nil {
			desired = *d.Spec.Replicas
		}
		out = append(out, v1alpha1.WorkerStatus{Tenant: slug, Deployment: d.Name, ComponentID: workload.ComponentID(ss, slug),
			ReadyReplicas: d.Status.ReadyReplicas, Replicas: desired})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out, nil
}

// pruneWorkers deletes the worker objects of tenants that have no sources
// left, and those rendered under other names (by an older manager, or for
// another identity provider): keep holds the names of every object of the
// current workers. Objects are found by their labels, never by names derived
// here, so a change of naming leaves nothing behind.
func (r *SyncServiceReconciler) pruneWorkers(ctx context.Context, ss *v1alpha1.SyncService, keep map[string]bool) error {
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.InNamespace(ss.Namespace), client.MatchingLabels{workload.SyncServiceLabel: ss.Name}); err != nil {
		return fmt.Errorf("listing worker Deployments: %w", err)
	}
	var objs []client.Object
	for _, d := range deps.Items {
		if keep[d.Name] {
			continue
		}
		objs = append(objs,
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ss.Namespace, Name: d.Name}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ss.Namespace, Name: d.Name}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ss.Namespace, Name: d.Name}},
		)
		if r.Events != nil {
			r.Events.Eventf(ss, nil, corev1.EventTypeNormal, "WorkerRemoved", "Delete", "removed worker %s (tenant %q)", d.Name, d.Labels[workload.WorkerTenantLabel])
		}
	}
	// Worker SVID Secrets carry the tenant label; the OnPrem bundle does not.
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.Client.List(ctx, secrets, client.InNamespace(ss.Namespace), client.MatchingLabels{workload.SyncServiceLabel: ss.Name},
		client.HasLabels{workload.WorkerTenantLabel}); err != nil {
		return fmt.Errorf("listing worker SVID Secrets: %w", err)
	}
	for _, m := range secrets.Items {
		if !keep[m.Name] {
			objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ss.Namespace, Name: m.Name}})
		}
	}
	if r.spireAvailable() {
		ids := &metav1.PartialObjectMetadataList{}
		ids.SetGroupVersionKind(workload.ClusterSPIFFEIDGVK.GroupVersion().WithKind("ClusterSPIFFEIDList"))
		if err := r.Client.List(ctx, ids, client.MatchingLabels{workload.SyncServiceLabel: ss.Name, workload.SyncServiceNamespaceLabel: ss.Namespace}); err != nil {
			return fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
		}
		for i := range ids.Items {
			if item := &ids.Items[i]; !keep[item.Name] {
				item.SetGroupVersionKind(workload.ClusterSPIFFEIDGVK)
				objs = append(objs, item)
			}
		}
	}
	for _, o := range objs {
		if err := r.Client.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil &&
			!apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			return fmt.Errorf("deleting %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
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

// phase derives the liveness phase from the gateway's heartbeat.
func (r *SyncServiceReconciler) phase(ss *v1alpha1.SyncService, workers []v1alpha1.WorkerStatus, out *outcome) v1alpha1.Phase {
	hb := ss.Status.LastHeartbeatAt
	if hb == nil {
		return v1alpha1.PhaseOffline
	}
	age := r.now().Sub(hb.Time)
	if age >= OnlineWindow {
		return v1alpha1.PhaseOffline
	}
	out.requeueIn(OnlineWindow - age + time.Second)
	for _, w := range workers {
		if w.ReadyReplicas == 0 && !ss.Spec.Paused {
			return v1alpha1.PhaseDegraded
		}
	}
	return v1alpha1.PhaseOnline
}

func (r *SyncServiceReconciler) writeStatus(ctx context.Context, ss *v1alpha1.SyncService, out *outcome) error {
	phase := r.phase(ss, out.workers, out)
	gen := ss.Generation
	existing := ss.Status.Conditions
	starting := 0
	for _, w := range out.workers {
		if w.ReadyReplicas == 0 {
			starting++
		}
	}
	progressReason, progressMsg := ReasonWorkersReady, "all workers are ready"
	switch {
	case ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem:
		progressReason, progressMsg = ReasonNoWorkers, "on-prem workers run at the tenant's edge"
	case len(out.workers) == 0:
		progressReason, progressMsg = ReasonNoWorkers, "no tenant has sources assigned"
	case starting > 0:
		progressReason, progressMsg = ReasonWorkersStarting, fmt.Sprintf("%d of %d workers are not ready", starting, len(out.workers))
	}
	availReason, availMsg := ReasonNoHeartbeat, fmt.Sprintf("no heartbeat within %s", OnlineWindow)
	if phase != v1alpha1.PhaseOffline {
		availReason, availMsg = ReasonHeartbeat, fmt.Sprintf("heartbeat within %s", OnlineWindow)
	}
	conds := []metav1.Condition{
		condition(existing, v1alpha1.ConditionReady, out.ready, out.reason, out.message, gen),
		condition(existing, v1alpha1.ConditionAvailable, phase != v1alpha1.PhaseOffline, availReason, availMsg, gen),
		condition(existing, v1alpha1.ConditionProgressing, progressReason == ReasonWorkersStarting, progressReason, progressMsg, gen),
		condition(existing, v1alpha1.ConditionDegraded, phase == v1alpha1.PhaseDegraded, string(phase), "phase "+string(phase), gen),
	}
	ready := workersReady(ss, out.workers)
	if !out.edgeKnown {
		// Not reached this time (a refusal or a wait): reported as before.
		out.edgeCerts, out.edgeSince = ss.Status.EdgeCertificates, ss.Status.EdgeIdentitySince
	}
	// The last answer to a certificate request is kept (status is applied
	// whole under one field manager): a new one, or the one in place.
	renewed := out.renewal
	if renewed == nil {
		renewed = ss.Status.CertificateRenewal
	}
	if renewed != nil {
		conds = append(conds, renewalCondition(existing, renewed, gen))
	}
	if out.renewal == nil && ss.Status.ObservedGeneration == gen && ss.Status.Phase == phase && ss.Status.OnboardingSecretName == out.onboarding &&
		slices.Equal(ss.Status.Workers, out.workers) && ss.Status.WorkersReady == ready && sameConditions(existing, conds) &&
		sameEdgeCerts(ss.Status.EdgeCertificates, out.edgeCerts) && ss.Status.EdgeIdentitySince.Equal(out.edgeSince) {
		return nil
	}
	status := map[string]any{"observedGeneration": gen, "phase": phase, "conditions": conds}
	if ready != "" {
		status["workersReady"] = ready
	}
	if out.workers != nil {
		status["workers"] = out.workers
	} else {
		status["workers"] = []v1alpha1.WorkerStatus{}
	}
	if out.onboarding != "" {
		status["onboardingSecretName"] = out.onboarding
	}
	if len(out.edgeCerts) > 0 {
		status["edgeCertificates"] = out.edgeCerts
	}
	if out.edgeSince != nil {
		status["edgeIdentitySince"] = out.edgeSince
	}
	if renewed != nil {
		status["certificateRenewal"] = renewed
	}
	// Only from the current object: a reconcile working from a stale cache
	// (the manager's own write not seen yet) would otherwise put back an
	// older certificate answer or list.
	return applyStatusIfCurrent(ctx, r.Client, "SyncService", ss, status)
}

// workersReady is status.workersReady: ready worker pods over desired ones,
// summed over the service's worker Deployments; empty for OnPrem.
func workersReady(ss *v1alpha1.SyncService, workers []v1alpha1.WorkerStatus) string {
	if ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem {
		return ""
	}
	var ready, desired int32
	for _, w := range workers {
		ready += w.ReadyReplicas
		desired += w.Replicas
	}
	return fmt.Sprintf("%d/%d", ready, desired)
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
			ns, name, _ := strings.Cut(SyncServiceKey(o.(*v1alpha1.IntegrationSource)), "/")
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
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

// sameEdgeCerts compares reported edge certificates at the second
// resolution status times have.
func sameEdgeCerts(a, b []v1alpha1.EdgeCertificate) bool {
	return slices.EqualFunc(a, b, func(x, y v1alpha1.EdgeCertificate) bool {
		return x.Serial == y.Serial && x.NotBefore.Equal(&y.NotBefore) && x.NotAfter.Equal(&y.NotAfter)
	})
}
