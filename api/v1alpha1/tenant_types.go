package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantSpec declares a tenant: an isolated owner of sync services, integration
// sources and device records.
//
// +kubebuilder:validation:XValidation:rule="self.slug != 'platform' || (has(self.platform) && self.platform)",message="slug 'platform' is reserved for the platform tenant (spec.platform: true)",fieldPath=".slug",reason=FieldValueForbidden
type TenantSpec struct {
	// Slug is the tenant's short name: a DNS label (lower-case letters, digits
	// and '-', at most 63 characters) that appears in namespace labels,
	// certificate identities and the tenant's PostgreSQL schema name. It is
	// immutable. The reserved platform slug ("platform" unless the manager is
	// configured otherwise) belongs to the platform tenant alone.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="slug is immutable"
	Slug string `json:"slug"`

	// Platform marks the platform tenant, which runs the shared (SaaS) sync
	// services for all tenants. At most one tenant is the platform tenant and it
	// must use the reserved platform slug. Immutable.
	//
	// +optional
	// +kubebuilder:default=false
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="platform is immutable"
	Platform bool `json:"platform,omitempty"`

	// DisplayName is a human-readable name shown by tools. It has no effect on
	// identity or storage.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName,omitempty"`
}

// TenantStatus is what the operator learned about a tenant.
type TenantStatus struct {
	// ObservedGeneration is the metadata.generation the status was computed from.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// TenantID is the tenant's stable UUID. The platform tenant's UUID is random,
	// created once and persisted by the operator; every other tenant's is
	// UUIDv5(platform tenant UUID, slug), so it is the same after a delete and
	// re-create.
	//
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	TenantID string `json:"tenantID,omitempty"`

	// Namespaces lists the namespaces labeled as belonging to this tenant.
	//
	// +optional
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`

	// Conditions describe the tenant's state. Ready is true once the tenant ID
	// and the tenant's certificate authority exist.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Tenant is an isolated owner of sync services, integration sources and device
// records. Namespaces join a tenant through the label
// integrations.serviceradar.io/tenant=<slug>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tn,categories=serviceradar
// +kubebuilder:printcolumn:name="Slug",type=string,JSONPath=`.spec.slug`
// +kubebuilder:printcolumn:name="Platform",type=boolean,JSONPath=`.spec.platform`
// +kubebuilder:printcolumn:name="TenantID",type=string,JSONPath=`.status.tenantID`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Tenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired tenant.
	// +required
	Spec TenantSpec `json:"spec"`
	// Status is what the operator observed.
	// +optional
	Status TenantStatus `json:"status,omitempty"`
}

// TenantList is a list of Tenants.
//
// +kubebuilder:object:root=true
type TenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the tenants.
	Items []Tenant `json:"items"`
}
