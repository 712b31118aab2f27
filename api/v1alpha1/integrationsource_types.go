package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IntegrationType names the system a source pulls devices from.
//
// +kubebuilder:validation:Enum=armis;netbox;faker
type IntegrationType string

const (
	// IntegrationArmis pulls devices from the Armis API (AQL search).
	IntegrationArmis IntegrationType = "armis"
	// IntegrationNetBox pulls devices from the NetBox REST API.
	IntegrationNetBox IntegrationType = "netbox"
	// IntegrationFaker generates a deterministic synthetic inventory.
	IntegrationFaker IntegrationType = "faker"
)

// Credential keys each integration type needs in its credentials Secret.
const (
	// ArmisSecretKey is the Secret key holding the Armis API secret key.
	ArmisSecretKey = "secret_key"
	// NetBoxTokenKey is the Secret key holding the NetBox API token.
	NetBoxTokenKey = "api_token"
)

// CredentialKey is the key an integration type needs in its credentials
// Secret, and false for types that need no credentials (faker).
func CredentialKey(t IntegrationType) (string, bool) {
	switch t {
	case IntegrationArmis:
		return ArmisSecretKey, true
	case IntegrationNetBox:
		return NetBoxTokenKey, true
	default:
		return "", false
	}
}

// DeletionPolicy says what happens to a source's devices when it is deleted.
//
// +kubebuilder:validation:Enum=Retain;Retract
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the source's devices as they are.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyRetract marks the source's devices unavailable.
	DeletionPolicyRetract DeletionPolicy = "Retract"
)

// SweepMode is a way agents probe a device.
//
// +kubebuilder:validation:Enum=icmp;tcp
type SweepMode string

// SyncResult is the outcome of a sync run.
//
// +kubebuilder:validation:Enum=Success;Partial;Failed
type SyncResult string

const (
	// SyncResultSuccess means every page was fetched and every segment applied.
	SyncResultSuccess SyncResult = "Success"
	// SyncResultPartial means some devices were applied but the fetch was incomplete.
	SyncResultPartial SyncResult = "Partial"
	// SyncResultFailed means the run applied nothing.
	SyncResultFailed SyncResult = "Failed"
)

// SecretReference names a Secret in the source's own namespace.
type SecretReference struct {
	// Name of the Secret, in the same namespace as the IntegrationSource.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// SyncServiceReference names the SyncService that runs a source.
type SyncServiceReference struct {
	// Namespace of the SyncService; empty means the source's own namespace. A
	// SyncService in another namespace must belong to the same tenant, or be a
	// platform sync service.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`

	// Name of the SyncService.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Query is one search a source runs each cycle; results of all queries are
// merged by device id.
type Query struct {
	// Label names the query; it is recorded on each device it found
	// (metadata query_label).
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Label string `json:"label"`

	// Query is the search: an AQL expression for armis (for example
	// `in:devices timeFrame:"3 Days"`), or URL query filters for netbox (for
	// example `status=active&site=hq`). Not used by faker.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query"`

	// SweepModes are the probe modes agents use on devices this query found;
	// empty means the source's sweep modes.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	SweepModes []SweepMode `json:"sweepModes,omitempty"`
}

// FakerSpec configures the built-in synthetic inventory.
type FakerSpec struct {
	// Devices is how many devices the generator serves. The set of devices never
	// changes between cycles.
	//
	// +optional
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Devices int32 `json:"devices,omitempty"`

	// ChurnPercent is the share of devices whose primary IPs are swapped with
	// another device's each cycle, like DHCP churn.
	//
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	ChurnPercent int32 `json:"churnPercent,omitempty"`

	// Seed makes the generated inventory reproducible: the same seed gives the
	// same devices.
	//
	// +optional
	// +kubebuilder:default=1
	Seed int64 `json:"seed,omitempty"`

	// Overlap makes a share of the devices ones that another generator
	// given the same overlap seed reports too (another Faker source, the
	// Armis and NetBox emulators under test/): such a device has the same
	// MAC, IPv4, IPv6 address and hostname in each, as one device that two
	// inventories know. Absent means no overlap.
	//
	// +optional
	Overlap *FakerOverlap `json:"overlap,omitempty"`
}

// FakerOverlap selects the devices a Faker source shares with other
// generators.
type FakerOverlap struct {
	// Seed selects the shared devices' identities; generators overlap only
	// when they use the same seed.
	//
	// +required
	Seed int64 `json:"seed"`

	// Percent is the share of devices, 0 to 100, that are shared: device
	// ordinals whose last two decimal digits are below it (within the
	// first 131,070 devices).
	//
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
}

// NetBoxAvailability is what a NetBox status says about a device's
// availability: Available, Unavailable, Unknown (the device is reported
// without an availability, so the one known stays; a new device counts as
// available) or Retract (the device is not reported, so a full pass
// retracts it).
//
// +kubebuilder:validation:Enum=Available;Unavailable;Unknown;Retract
type NetBoxAvailability string

// NetBox availabilities.
const (
	// NetBoxAvailable reports the device available.
	NetBoxAvailable NetBoxAvailability = "Available"
	// NetBoxUnavailable reports the device unavailable.
	NetBoxUnavailable NetBoxAvailability = "Unavailable"
	// NetBoxUnknown reports the device without an availability.
	NetBoxUnknown NetBoxAvailability = "Unknown"
	// NetBoxRetract leaves the device out, so a full pass retracts it.
	NetBoxRetract NetBoxAvailability = "Retract"
)

// NetBoxSpec holds the settings only netbox sources have.
type NetBoxSpec struct {
	// ExcludeVirtualMachines leaves NetBox's virtual machines out. By
	// default they are devices too, identified by netbox_vm_id, read with
	// the same queries as devices.
	//
	// +optional
	// +kubebuilder:default=false
	ExcludeVirtualMachines bool `json:"excludeVirtualMachines,omitempty"`

	// StatusAvailability overrides, by NetBox status value (of devices and
	// virtual machines, custom statuses included), what the status means
	// for availability. The defaults: active Available; offline, planned,
	// failed and inventory Unavailable; staged Unknown; decommissioning
	// Retract; any other status Unknown.
	//
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-z0-9_-]{1,50}$'))",message="keys must be NetBox status values: 1 to 50 lower-case letters, digits, - or _"
	StatusAvailability map[string]NetBoxAvailability `json:"statusAvailability,omitempty"`
}

// DefaultArmisStaleAfter is how long after Armis last saw a device it is
// still reported available when spec.armis.staleAfter is not set.
const DefaultArmisStaleAfter = 30 * 24 * time.Hour

// ArmisSpec holds the settings only armis sources have.
type ArmisSpec struct {
	// StaleAfter is how long after its lastSeen a device is still reported
	// available: a device Armis last saw longer ago than this, at the time
	// of the sync, is reported unavailable (it stays in the inventory and
	// keeps its identity; it is reported available again once Armis sees it
	// again). "0s" turns staleness off. Default 720h (30 days), also when
	// spec.armis is absent.
	//
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || (duration(self) >= duration('1m') && duration(self) <= duration('8760h'))",message="must be 0s (off) or a duration between 1m and 8760h"
	StaleAfter *metav1.Duration `json:"staleAfter,omitempty"`
}

// ArmisStaleAfter is the staleness in force for a source: spec.armis.staleAfter,
// or DefaultArmisStaleAfter when it is not set. Zero means off.
func (s *IntegrationSourceSpec) ArmisStaleAfter() time.Duration {
	if s.Armis == nil || s.Armis.StaleAfter == nil {
		return DefaultArmisStaleAfter
	}
	return s.Armis.StaleAfter.Duration
}

// SweepSpec says whether and how agents sweep a source's devices.
type SweepSpec struct {
	// Enabled makes the devices the source reports (with an IP, and not
	// retracted) sweep targets for the agents of its tenant and partition,
	// whatever their last known availability: that is what agents measure.
	//
	// +optional
	// +kubebuilder:default=false
	Enabled bool `json:"enabled,omitempty"`

	// Modes are the probe modes agents use.
	//
	// +optional
	// +listType=set
	// +kubebuilder:default={icmp}
	// +kubebuilder:validation:MaxItems=2
	Modes []SweepMode `json:"modes,omitempty"`

	// Ports are the TCP ports agents probe in tcp mode.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []int32 `json:"ports,omitempty"`

	// Networks are extra CIDRs agents sweep besides the source's devices.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8"
	Networks []string `json:"networks,omitempty"`

	// Interval is how often agents sweep, as a duration between 1m and 24h.
	//
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="must be a duration between 1m and 24h"
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// IntegrationSourceSpec declares where a tenant's devices come from and how
// they are synced.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'faker' || has(self.endpoint)",message="endpoint is required for armis and netbox sources",fieldPath=".endpoint",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="self.type == 'faker' || has(self.credentialsSecretRef)",message="credentialsSecretRef is required for armis and netbox sources",fieldPath=".credentialsSecretRef",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="self.type == 'faker' || !has(self.faker)",message="faker settings are only allowed when type is faker",fieldPath=".faker",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.type == 'armis' || !has(self.armis)",message="armis settings are only allowed when type is armis",fieldPath=".armis",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.type == 'netbox' || !has(self.netbox)",message="netbox settings are only allowed when type is netbox",fieldPath=".netbox",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.type != 'armis' || (has(self.queries) && size(self.queries) > 0)",message="armis sources need at least one query",fieldPath=".queries",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="self.type != 'netbox' || !has(self.pageSize) || self.pageSize <= 1000",message="netbox allows at most 1000 rows per page",fieldPath=".pageSize",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.pollInterval) || !has(self.discoveryInterval) || duration(self.discoveryInterval) >= duration(self.pollInterval)",message="discoveryInterval must not be shorter than pollInterval",fieldPath=".discoveryInterval",reason=FieldValueInvalid
type IntegrationSourceSpec struct {
	// Type is the integration: armis, netbox or faker. Immutable.
	//
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="type is immutable"
	Type IntegrationType `json:"type"`

	// Endpoint is the base URL of the integration's API, for example
	// https://acme.armis.com or https://netbox.example.com. Required for armis
	// and netbox; not used by faker.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="must be an http or https URL"
	Endpoint string `json:"endpoint,omitempty"`

	// CredentialsSecretRef names the Secret, in this namespace, holding the
	// integration's credentials: key "secret_key" for armis, "api_token" for
	// netbox. Required for armis and netbox; not used by faker. Credentials are
	// sent only to the worker that runs this source, never to status or events.
	//
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// SyncServiceRef names the SyncService that runs this source: one of the
	// same tenant, or a platform sync service.
	//
	// +required
	SyncServiceRef SyncServiceReference `json:"syncServiceRef"`

	// Partition is the network partition the source's devices belong to;
	// devices are only ever merged within one partition.
	//
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Partition string `json:"partition,omitempty"`

	// Queries are the searches run each cycle (required for armis). Results are
	// merged by device id.
	//
	// +optional
	// +listType=map
	// +listMapKey=label
	// +kubebuilder:validation:MaxItems=32
	Queries []Query `json:"queries,omitempty"`

	// PollInterval is how often the source is synced, as a duration between 30s
	// and 24h. Between full fetches (see discoveryInterval), a sync of an
	// armis or netbox source reads only the devices changed since the last
	// good sync; a faker source is read whole every time.
	//
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('24h')",message="must be a duration between 30s and 24h"
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`

	// DiscoveryInterval is how often a full fetch runs (one that may retract
	// devices no longer reported), as a duration between 1m and 168h, not
	// shorter than pollInterval.
	//
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('168h')",message="must be a duration between 1m and 168h"
	DiscoveryInterval *metav1.Duration `json:"discoveryInterval,omitempty"`

	// PageSize is how many rows one API page holds: at most 5000 for armis and
	// 1000 for netbox. Workers use smaller pages after repeated failures.
	//
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5000
	PageSize int32 `json:"pageSize,omitempty"`

	// NetworkBlacklist lists CIDRs whose addresses are dropped from the
	// source's devices before they are sent.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8"
	NetworkBlacklist []string `json:"networkBlacklist,omitempty"`

	// Faker configures the synthetic inventory; only for type faker.
	//
	// +optional
	Faker *FakerSpec `json:"faker,omitempty"`

	// Armis holds settings only armis sources have (device staleness).
	//
	// +optional
	Armis *ArmisSpec `json:"armis,omitempty"`

	// NetBox holds settings only netbox sources have (virtual machines, and
	// what each status means for availability).
	//
	// +optional
	NetBox *NetBoxSpec `json:"netbox,omitempty"`

	// Sweep says whether and how agents sweep the source's devices.
	//
	// +optional
	Sweep *SweepSpec `json:"sweep,omitempty"`

	// Paused stops syncing this source without deleting it or its devices.
	//
	// +optional
	Paused bool `json:"paused,omitempty"`

	// DeletionPolicy says what happens to the source's devices when the source
	// is deleted: Retain keeps them, Retract marks them unavailable.
	//
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// IntegrationSourceStatus is what the operator and the gateway learned about a source.
type IntegrationSourceStatus struct {
	// ObservedGeneration is the metadata.generation the status was computed from.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// AssignedWorker is the component id of the worker that runs this source.
	//
	// +optional
	AssignedWorker string `json:"assignedWorker,omitempty"`

	// LastSyncTime is when the last sync run finished.
	//
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// LastSyncResult is the outcome of the last sync run.
	//
	// +optional
	LastSyncResult SyncResult `json:"lastSyncResult,omitempty"`

	// LastError is the error of the last failed run, without secrets; empty
	// after a successful run.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`

	// DevicesDiscovered is how many devices the last run reported.
	//
	// +optional
	DevicesDiscovered int64 `json:"devicesDiscovered,omitempty"`

	// LastRunID is the UUID of the last finished sync run.
	//
	// +optional
	LastRunID string `json:"lastRunID,omitempty"`

	// Conditions describe the source's state: Ready (its references resolve and
	// it is served) and Synced (its last run succeeded).
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// IntegrationSource is a source of device inventory (Armis, NetBox or the
// built-in Faker) run by a SyncService for the tenant of its namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=isrc,categories=serviceradar
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="SyncService",type=string,JSONPath=`.spec.syncServiceRef.name`
// +kubebuilder:printcolumn:name="Devices",type=integer,JSONPath=`.status.devicesDiscovered`
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IntegrationSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired source.
	// +required
	Spec IntegrationSourceSpec `json:"spec"`
	// Status is what the operator and gateway observed.
	// +optional
	Status IntegrationSourceStatus `json:"status,omitempty"`
}

// IntegrationSourceList is a list of IntegrationSources.
//
// +kubebuilder:object:root=true
type IntegrationSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the integration sources.
	Items []IntegrationSource `json:"items"`
}
