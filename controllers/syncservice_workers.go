package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workload"
)

// SaaS workers: one Deployment per tenant whose sources a SaaS SyncService
// serves, with its ServiceAccount, bootstrap ConfigMap and identity (a SPIRE
// ClusterSPIFFEID or an operator-issued SVID Secret), applied only when
// their rendered hash changed, and pruned by label when no longer wanted.

// sourceTenants returns the slugs of the tenants whose sources this SaaS
// SyncService, in a namespace of tenant own, serves: those that reference
// it and that it may serve (v1alpha1.MayServe, the rule the sources' Ready
// conditions and the gateway's bundles follow too).
func (r *SyncServiceReconciler) sourceTenants(ctx context.Context, ss *v1alpha1.SyncService, own *v1alpha1.Tenant) ([]string, error) {
	var sources v1alpha1.IntegrationSourceList
	if err := r.Client.List(ctx, &sources, client.MatchingFields{IndexSourceSyncService: client.ObjectKeyFromObject(ss).String()}); err != nil {
		return nil, fmt.Errorf("listing sources of SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
	}
	seen := map[string]bool{}
	for i := range sources.Items {
		src := &sources.Items[i]
		if !src.DeletionTimestamp.IsZero() {
			continue
		}
		t, _, err := tenantOfNamespace(ctx, r.Client, src.Namespace)
		if err != nil {
			return nil, err
		}
		if v1alpha1.MayServe(ss, src, v1alpha1.NamespaceTenantOf(own), v1alpha1.NamespaceTenantOf(t)) != nil {
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
		out.ready, out.reason, out.message = false, v1alpha1.ReasonDuplicateIdentity, fmt.Sprintf(
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
		if reason == v1alpha1.ReasonSPIRECRDMissing {
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
		return v1alpha1.ReasonGatewayTrustMismatch, fmt.Sprintf("workers would get SPIRE SVIDs (spec.identity.provider %q and the ClusterSPIFFEID CRD is installed), "+
			"but the gateway trusts only the operator's root CA (manager --gateway-trust=%s, chart value spire.enabled=false): "+
			"set spec.identity.provider to %q, or install the chart with spire.enabled=true; no workers run until then",
			v1alpha1.IdentityProviderSPIRE, GatewayTrustOperator, v1alpha1.IdentityProviderCertificate)
	case trust == GatewayTrustSPIRE && !wantSPIRE:
		return v1alpha1.ReasonGatewayTrustMismatch, fmt.Sprintf("workers would get operator-issued SVIDs (spec.identity.provider %q), "+
			"but the gateway trusts only SPIRE's trust bundle (manager --gateway-trust=%s, chart value spire.enabled=true): "+
			"set spec.identity.provider to %q, or install the chart with spire.enabled=false; no workers run until then",
			v1alpha1.IdentityProviderCertificate, GatewayTrustSPIRE, v1alpha1.IdentityProviderSPIRE)
	case trust == GatewayTrustSPIRE && !useSPIRE:
		return v1alpha1.ReasonSPIRECRDMissing, fmt.Sprintf("spec.identity.provider is %q but the ClusterSPIFFEID CRD of the SPIRE controller manager is not installed, "+
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
	component := v1alpha1.ComponentID(ss, slug)
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
	w.Bootstrap = bootstrap.Config{GatewayAddress: r.GatewayAddress, ComponentID: component, Partition: ss.Spec.Partition, TenantSlug: slug}
	if useSPIRE {
		w.Bootstrap.Identity = bootstrap.Identity{Source: bootstrap.IdentityWorkloadAPI, WorkloadAPISocket: workload.WorkloadAPISock, SPIFFEID: id.String()}
	} else {
		w.Bootstrap.Identity = bootstrap.FileIdentity(workload.IdentityDir)
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

func (r *SyncServiceReconciler) ensureSVIDSecret(ctx context.Context, w workload.Worker, out *outcome) error {
	s := certSecret{Key: types.NamespacedName{Namespace: w.SyncService.Namespace, Name: w.IdentitySecretName()}, Identity: w.SPIFFEID}
	m, err := s.read(ctx, r.Client)
	if err != nil {
		return err
	}
	if left, ok := s.renewIn(m, r.now()); ok {
		out.requeueIn(left)
		return nil
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
	return r.issueCertSecret(ctx, w.SyncService, &s, issuedSecret{Issued: issued, CA: root, Type: corev1.SecretTypeOpaque, Labels: w.Labels()}, out)
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
		out = append(out, v1alpha1.WorkerStatus{Tenant: slug, Deployment: d.Name, ComponentID: v1alpha1.ComponentID(ss, slug),
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
