package v1alpha1

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// SyncServiceKey is the SyncService a source names: spec.syncServiceRef,
// its namespace defaulted to the source's own.
func (src *IntegrationSource) SyncServiceKey() types.NamespacedName {
	ns := src.Spec.SyncServiceRef.Namespace
	if ns == "" {
		ns = src.Namespace
	}
	return types.NamespacedName{Namespace: ns, Name: src.Spec.SyncServiceRef.Name}
}

// NamespaceTenant is the tenant a namespace belongs to, as the caller
// resolved it: the namespace's TenantLabel naming a Tenant that may be
// served (package tenancy). This package cannot look it up; the manager
// reads it from its cache, the gateway from its informers and the caller's
// certificate. The zero value is a namespace of no served tenant.
//
// +kubebuilder:object:generate=false
type NamespaceTenant struct {
	// Slug is the tenant's slug; empty when the namespace belongs to no
	// tenant that is served.
	Slug string
	// Platform is true when the tenant is the platform tenant.
	Platform bool
}

// NamespaceTenantOf is the NamespaceTenant of a resolved Tenant; nil (no
// tenant) gives the zero value.
func NamespaceTenantOf(t *Tenant) NamespaceTenant {
	if t == nil {
		return NamespaceTenant{}
	}
	return NamespaceTenant{Slug: t.Spec.Slug, Platform: t.Spec.Platform}
}

// SlugTenant is the NamespaceTenant of a namespace labelled with tenant
// slug, as the gateway knows it: the platform tenant is the one of
// platformSlug, its configured reserved slug. An empty slug gives the zero
// value.
func SlugTenant(slug, platformSlug string) NamespaceTenant {
	return NamespaceTenant{Slug: slug, Platform: slug != "" && slug == platformSlug}
}

// Refusal is why a SyncService may not serve a source or a tenant: the
// reason and message of the source's Ready condition.
//
// +kubebuilder:object:generate=false
type Refusal struct {
	// Reason is a condition reason (ReasonTenantNotFound,
	// ReasonSyncServiceNotFound or ReasonSyncServiceNotAllowed).
	Reason string
	// Message explains it to the source's owner.
	Message string
}

// MayServeTenant says whether ss, in a namespace of ssTenant, may run
// workers for the tenant of slug tenant: nil when it may. A SyncService
// serves its own tenant; a platform SyncService (spec.platform) serves
// every tenant, and only from a namespace of the platform tenant. A
// SyncService in a namespace of no served tenant serves none.
//
// This is the one rule of who serves whom: the manager's Ready conditions
// and worker Deployments and the gateway's bundles all ask it (MayServe).
func MayServeTenant(ss *SyncService, ssTenant NamespaceTenant, tenant string) *Refusal {
	key := types.NamespacedName{Namespace: ss.Namespace, Name: ss.Name}
	switch {
	case tenant == "" || ssTenant.Slug == "",
		ss.Spec.Platform && !ssTenant.Platform,
		!ss.Spec.Platform && ssTenant.Slug != tenant:
		return SyncServiceUnusable(key, tenant)
	}
	return nil
}

// MayServe says whether ss, in a namespace of ssTenant, may serve src, in
// a namespace of srcTenant: nil when it may. It may when src names ss
// (SyncServiceKey), src's namespace belongs to a served tenant, ss may
// serve that tenant (MayServeTenant), and ss's spec.capabilities, when
// set, include src's type. Otherwise the Refusal is the reason and message
// of src's Ready condition. Deletion is not judged here: callers skip
// objects being deleted.
func MayServe(ss *SyncService, src *IntegrationSource, ssTenant, srcTenant NamespaceTenant) *Refusal {
	key := src.SyncServiceKey()
	switch {
	case srcTenant.Slug == "":
		return &Refusal{Reason: ReasonTenantNotFound, Message: TenantMissing(src.Namespace)}
	case key.Namespace != ss.Namespace || key.Name != ss.Name:
		return SyncServiceUnusable(key, srcTenant.Slug)
	}
	if r := MayServeTenant(ss, ssTenant, srcTenant.Slug); r != nil {
		return r
	}
	if len(ss.Spec.Capabilities) > 0 && !slices.Contains(ss.Spec.Capabilities, string(src.Spec.Type)) {
		return &Refusal{Reason: ReasonSyncServiceNotAllowed, Message: fmt.Sprintf("SyncService %s does not have capability %q", key, src.Spec.Type)}
	}
	return nil
}

// SyncServiceUnusable is the refusal of a SyncService that a source of
// tenant names and that does not exist or that this tenant may not use:
// one answer for both, so that a source cannot probe other tenants'
// namespaces for SyncServices or learn who owns them.
func SyncServiceUnusable(key types.NamespacedName, tenant string) *Refusal {
	return &Refusal{Reason: ReasonSyncServiceNotFound, Message: fmt.Sprintf(
		"SyncService %s not found, or not usable by tenant %q (use one in a namespace of this tenant, or a platform SyncService)", key, tenant)}
}

// TenantMissing is the message of an object whose namespace belongs to no
// served tenant (reason ReasonTenantNotFound).
func TenantMissing(namespace string) string {
	return fmt.Sprintf("namespace %q has no %s label naming an existing Tenant", namespace, TenantLabel)
}
