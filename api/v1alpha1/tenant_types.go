package v1alpha1

import (
	"fmt"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxSlugLength is the longest tenant slug. Every name derived from a slug
// must fit its own limit: the PostgreSQL schema tenant_<slug> (63 bytes), the
// tenant CA's CN tenant-<slug>.ca.serviceradar and edge CNs
// <component>.<partition>.<slug>.serviceradar (64 characters each), and
// Kubernetes names and label values (63). At 32 the schema name takes at most
// 39 bytes and the CA's CN 55 characters, and an edge CN keeps 17 characters
// for its component id and partition.
const MaxSlugLength = 32

// slugPattern is the form of a slug (the Pattern marker of TenantSpec.Slug):
// a DNS label, which has no '_', so that turning '-' into '_' in schema
// names keeps two slugs apart.
var slugPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidSlug refuses a slug that the CRD schema refuses today: longer than
// MaxSlugLength or not a DNS label. A Tenant stored before the limit may
// still carry one; every component treats such a slug as naming no tenant.
func ValidSlug(slug string) error {
	switch {
	case len(slug) > MaxSlugLength:
		return fmt.Errorf("slug %q has %d characters, more than %d", slug, len(slug), MaxSlugLength)
	case !slugPattern.MatchString(slug):
		return fmt.Errorf("slug %q is not a DNS label (lower-case letters, digits and '-')", slug)
	}
	return nil
}

// TenantDeletionPolicy says what happens to a tenant's device records when
// the Tenant is deleted.
//
// +kubebuilder:validation:Enum=Retain;Drop
type TenantDeletionPolicy string

const (
	// TenantDeletionRetain keeps the tenant's PostgreSQL schema: a Tenant
	// created again with the same slug finds its devices.
	TenantDeletionRetain TenantDeletionPolicy = "Retain"
	// TenantDeletionDrop drops the tenant's PostgreSQL schema (every device,
	// identifier, run and audit row of the tenant) before the Tenant goes.
	TenantDeletionDrop TenantDeletionPolicy = "Drop"
)

// TenantSpec declares a tenant: an isolated owner of sync services, integration
// sources and device records.
//
// +kubebuilder:validation:XValidation:rule="self.slug != 'platform' || (has(self.platform) && self.platform)",message="slug 'platform' is reserved for the platform tenant (spec.platform: true)",fieldPath=".slug",reason=FieldValueForbidden
type TenantSpec struct {
	// Slug is the tenant's short name: a DNS label of at most 32 characters
	// (lower-case letters, digits and '-') that appears in namespace labels,
	// certificate identities and the tenant's PostgreSQL schema name
	// (tenant_<slug>, '-' written as '_'); the limit keeps every one of those
	// names within its length limit, so no two slugs share one. It is
	// immutable and unique: when two Tenants claim one slug, neither is served
	// until one is deleted. The reserved platform slug ("platform" unless the
	// manager is configured otherwise) belongs to the platform tenant alone.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
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

	// DeletionPolicy says what happens to the tenant's device records (its
	// PostgreSQL schema) when the Tenant is deleted: Retain keeps them for a
	// Tenant created again with the same slug, Drop has the gateway drop the
	// schema before the Tenant goes. Either way the tenant's certificate
	// authority is revoked at once: a Tenant created again gets a new one and
	// the old edge certificates are refused.
	//
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy TenantDeletionPolicy `json:"deletionPolicy,omitempty"`
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

	// CAFingerprint is the SHA-256 (hex) of the public key of the tenant's
	// intermediate certificate authority. The gateway accepts an edge
	// certificate of this tenant only when this key signed it, so the
	// certificates of a deleted tenant stay refused when a Tenant with the
	// same slug is created again.
	//
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	CAFingerprint string `json:"caFingerprint,omitempty"`

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
