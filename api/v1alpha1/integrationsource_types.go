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
// +kubebuilder:validation:Enum=Success;Partial;Failed;HeldRetraction
type SyncResult string

const (
	// SyncResultSuccess means every page was fetched and every segment applied.
	SyncResultSuccess SyncResult = "Success"
	// SyncResultPartial means some devices were applied but the fetch was incomplete.
	SyncResultPartial SyncResult = "Partial"
	// SyncResultFailed means the run applied nothing.
	SyncResultFailed SyncResult = "Failed"
	// SyncResultHeldRetraction means a full run fetched every page but would
	// have retracted more than spec.maxRetractPercent of the source's
	// devices: it applied its devices and retracted nothing, and waits for
	// the ApproveRetractionAnnotation naming it.
	SyncResultHeldRetraction SyncResult = "HeldRetraction"
)

// SyncMode is how a run fetched its source.
//
// +kubebuilder:validation:Enum=full;incremental
type SyncMode string

const (
	// SyncModeFull fetches the whole inventory; only a full run that fetched
	// every page retracts devices it did not see.
	SyncModeFull SyncMode = "full"
	// SyncModeIncremental fetches only the devices changed since the last
	// good run; it never retracts.
	SyncModeIncremental SyncMode = "incremental"
)

// ApproveRetractionAnnotation on an IntegrationSource approves, once, the
// retraction that the run named by its value (a run id, as in
// status.lastRun.id) held: the gateway then retracts the devices that run
// did not report, except those that runs since have reported again. An
// approval of a run that is no longer held (released already, or
// superseded by a later full run) does nothing.
const ApproveRetractionAnnotation = "integrations.serviceradar.io/approve-retraction"

// SyncRequestedAtAnnotation on an IntegrationSource asks, with an RFC 3339
// time as its value (for example 2026-05-04T10:00:00Z), for an immediate
// run of the source ("sync now"): the gateway replica that holds the
// control stream of the source's worker sends it the request, once per
// value, and records the outcome in status.syncRequest. A value not newer
// than status.syncRequest.requestedAt is not acted on again. Requests of a
// source reach its worker at most once per SyncRequestInterval; one inside
// it waits (result Deferred) and is sent when the interval has passed.
const SyncRequestedAtAnnotation = "integrations.serviceradar.io/sync-requested-at"

// SyncModeAnnotation selects how the run that SyncRequestedAtAnnotation asks
// for fetches: "full" (the default) or "incremental" (only the devices
// changed since the last good run; a source that cannot fetch changes, or
// has had no full run yet, runs in full).
const SyncModeAnnotation = "integrations.serviceradar.io/sync-mode"

// SyncRequestInterval is the per-source rate limit of sync-now requests:
// at most one is delivered to the worker within it.
const SyncRequestInterval = 30 * time.Second

// SyncRequestResult is what became of a sync-now request.
//
// +kubebuilder:validation:Enum=Accepted;Rejected;Deferred;NotConnected;Invalid;Failed
type SyncRequestResult string

const (
	// SyncRequestAccepted means the worker accepted the request: the run
	// starts now, or right after the run in progress.
	SyncRequestAccepted SyncRequestResult = "Accepted"
	// SyncRequestRejected means the worker answered that it cannot run the
	// source (for example it is paused, or not in its configuration yet).
	SyncRequestRejected SyncRequestResult = "Rejected"
	// SyncRequestDeferred means the request came within SyncRequestInterval
	// of the previous one delivered; it is sent when the interval has passed.
	SyncRequestDeferred SyncRequestResult = "Deferred"
	// SyncRequestNotConnected means no gateway replica held a control stream
	// of the source's worker for a minute after the request was seen: the
	// worker is not connected. The request is dropped; set the annotation
	// again once the worker is back.
	SyncRequestNotConnected SyncRequestResult = "NotConnected"
	// SyncRequestInvalid means an annotation value could not be read; the
	// message names the annotation.
	SyncRequestInvalid SyncRequestResult = "Invalid"
	// SyncRequestFailed means the request was sent but the worker's answer
	// never came (its control stream ended or the answer timed out): the
	// run may or may not happen.
	SyncRequestFailed SyncRequestResult = "Failed"
)

// SyncRequestStatus is what the gateway did with the last sync-now request
// (SyncRequestedAtAnnotation) of a source.
type SyncRequestStatus struct {
	// RequestedAt is the time the annotation asked for, to the second: the
	// request this record is about. Requests not newer than it are not
	// acted on. Absent when the annotation's value was not a time.
	//
	// +optional
	RequestedAt *metav1.Time `json:"requestedAt,omitempty"`
	// Mode is the fetch the request asked for: full or incremental.
	//
	// +optional
	Mode SyncMode `json:"mode,omitempty"`
	// ObservedAt is when a gateway replica first recorded the request.
	//
	// +optional
	ObservedAt *metav1.Time `json:"observedAt,omitempty"`
	// DeliveredAt is when the gateway last delivered a sync-now request of
	// this source to its worker: this request's delivery once its result
	// is Accepted or Rejected, an earlier request's before. The rate limit
	// (one request per 30 s) counts from it.
	//
	// +optional
	DeliveredAt *metav1.Time `json:"deliveredAt,omitempty"`
	// Result is Accepted, Rejected, Deferred, NotConnected, Invalid or
	// Failed (see each for what it means).
	//
	// +optional
	Result SyncRequestResult `json:"result,omitempty"`
	// Message is the worker's answer, or why the request was not delivered.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// DryRunSampleLimit is how many devices status.dryRun lists of each kind
// of change (the gateway's store.DryRunSampleLimit; the lists' MaxItems).
const DryRunSampleLimit = 10

// DryRunStatus is what a dry run would have done: the counts a real run
// records in status.lastRun, and a few devices of each kind of change.
type DryRunStatus struct {
	// ID is the run's UUID.
	//
	// +optional
	ID string `json:"id,omitempty"`
	// FinishedAt is when the gateway evaluated the run (and rolled it back).
	//
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// ObservedGeneration is the metadata.generation of the source when the
	// run was evaluated: the spec the prediction is about.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Result is the result the run would have had: Success, Partial, Failed
	// or HeldRetraction (the brake would hold its retraction).
	//
	// +optional
	Result SyncResult `json:"result,omitempty"`
	// Error is the fetch error the worker reported, if any, without secrets.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
	// Counts are what the run would have changed. For a run the brake would
	// hold, counts.retracted is what it would retract once approved.
	//
	// +optional
	Counts RunCounts `json:"counts,omitempty"`
	// Available is how many devices the source reported available when the
	// dry run was evaluated: what counts.retracted is a share of.
	//
	// +optional
	Available int64 `json:"available,omitempty"`
	// Created lists up to DryRunSampleLimit of the devices the run would
	// create, in uid order, each as "<device uid> (<hostname, name or ip>)":
	// device uids derive from the device's strongest identifier, so the real
	// run creates them under the same uids.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Created []string `json:"created,omitempty"`
	// Updated lists up to DryRunSampleLimit of the known devices the run
	// would change, as Created does.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Updated []string `json:"updated,omitempty"`
	// Merged lists up to DryRunSampleLimit of the merges the run would make,
	// each as "<merged device uid> -> <surviving device uid>".
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Merged []string `json:"merged,omitempty"`
	// Retracted lists up to DryRunSampleLimit of the devices the run would
	// retract (or, held by the brake, would retract once approved), as
	// Created does.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Retracted []string `json:"retracted,omitempty"`
}

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

	// PageSize is how many rows one API page holds. Unset, it is the type's
	// default: 100 for armis, netbox and faker. At most 5000 for armis and
	// faker, 1000 for netbox. Workers use smaller pages after repeated
	// failures.
	//
	// +optional
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

	// MaxRetractPercent is the retraction brake: a full run that would retract
	// (mark unavailable for this source) more than this share, in percent, of
	// the devices the source reports available retracts nothing. Its result is
	// HeldRetraction, status.lastRun.retraction shows how many devices it
	// would retract of how many, and it waits for the annotation
	// integrations.serviceradar.io/approve-retraction=<run id>, which
	// releases that run's retraction once. 100 turns the brake off; 0 holds
	// every retraction. Deleting a source with deletionPolicy Retract is not
	// braked.
	//
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxRetractPercent *int32 `json:"maxRetractPercent,omitempty"`

	// HistoryLimit is how many of the source's last finished runs
	// status.history keeps, newest first (the run history itself stays in
	// the gateway's database).
	//
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	HistoryLimit int32 `json:"historyLimit,omitempty"`

	// DryRun makes every run of the source a rehearsal: the worker fetches the
	// whole inventory, and the gateway resolves it through DIRE in a
	// transaction that it rolls back, so that no device, identifier or claim
	// changes. What the run would have done (counts of devices created,
	// updated, unchanged, merged and retracted, whether the retraction brake
	// would hold, and a sample of each) appears in status.dryRun. Set it,
	// edit the source (a query, a filter), read status.dryRun, then unset it:
	// the next run writes. Combine with the sync-now annotation to rehearse
	// at once. The worker's schedule for incremental runs is not advanced by
	// a dry run.
	//
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// DefaultMaxRetractPercent is the retraction brake of a source whose
// spec.maxRetractPercent is not set.
const DefaultMaxRetractPercent = 20

// DefaultHistoryLimit is how many runs status.history keeps when
// spec.historyLimit is not set; MaxHistoryLimit is the most it may keep.
const (
	DefaultHistoryLimit = 10
	MaxHistoryLimit     = 50
)

// RetractLimit is the retraction brake in force for a source, in percent:
// spec.maxRetractPercent, or DefaultMaxRetractPercent when it is not set.
func (s *IntegrationSourceSpec) RetractLimit() int {
	if s.MaxRetractPercent == nil {
		return DefaultMaxRetractPercent
	}
	return min(max(int(*s.MaxRetractPercent), 0), 100)
}

// RunHistoryLimit is how many runs status.history keeps for a source:
// spec.historyLimit, or DefaultHistoryLimit, within 1..MaxHistoryLimit.
func (s *IntegrationSourceSpec) RunHistoryLimit() int {
	if s.HistoryLimit <= 0 {
		return DefaultHistoryLimit
	}
	return min(int(s.HistoryLimit), MaxHistoryLimit)
}

// RunCounts are what one sync run did, device by device. A device is the
// canonical device DIRE resolved an update to; a run that reports a device
// in two segments counts it in each.
type RunCounts struct {
	// Fetched is how many device updates the worker sent in the run,
	// refused ones included.
	//
	// +optional
	Fetched int64 `json:"fetched"`
	// Created is how many devices the run added to the inventory.
	//
	// +optional
	Created int64 `json:"created"`
	// Updated is how many known devices the run changed: a field the source
	// sent differs from the stored one, or the source claims the device
	// anew (first report by this source, or a report after a retraction).
	//
	// +optional
	Updated int64 `json:"updated"`
	// Unchanged is how many known devices the run reported as they were
	// stored (only their last-seen time may move).
	//
	// +optional
	Unchanged int64 `json:"unchanged"`
	// Merged is how many existing devices the run found to be one with
	// another device and merged into it (see the merge_audit table).
	//
	// +optional
	Merged int64 `json:"merged"`
	// Retracted is how many devices the run marked unavailable for this
	// source because a full fetch did not report them (for a held run: how
	// many its approval retracted).
	//
	// +optional
	Retracted int64 `json:"retracted"`
	// Refused is how many device updates could never be stored (a NUL byte
	// or invalid UTF-8 in a field) and were left out.
	//
	// +optional
	Refused int64 `json:"refused"`
}

// RetractionState is where a held retraction stands.
//
// +kubebuilder:validation:Enum=Held;Released;Superseded
type RetractionState string

const (
	// RetractionHeld waits for the approval annotation.
	RetractionHeld RetractionState = "Held"
	// RetractionReleased was approved and carried out.
	RetractionReleased RetractionState = "Released"
	// RetractionSuperseded was never carried out: a later full run decided
	// the source's retraction afresh.
	RetractionSuperseded RetractionState = "Superseded"
)

// HeldRetraction is a retraction that the brake (spec.maxRetractPercent) held.
type HeldRetraction struct {
	// Devices is how many devices the run would have retracted.
	Devices int64 `json:"devices"`
	// Of is how many devices the source reported available before the run.
	Of int64 `json:"of"`
	// MaxPercent is the brake the run was held by.
	MaxPercent int32 `json:"maxPercent"`
	// State is Held (waiting for approval), Released (approved and carried
	// out: counts.retracted says how many were retracted, fewer when runs
	// since reported some of them again) or Superseded (a later full run
	// decided afresh; never carried out).
	State RetractionState `json:"state"`
	// DecidedAt is when the retraction was released or superseded.
	//
	// +optional
	DecidedAt *metav1.Time `json:"decidedAt,omitempty"`
}

// SyncRun is one finished sync run of a source.
type SyncRun struct {
	// ID is the run's UUID, which the worker chose; it names the run in
	// logs, in the gateway's sync_runs table and in the approve-retraction
	// annotation.
	ID string `json:"id"`
	// StartTime is when the gateway received the run's first segment.
	StartTime metav1.Time `json:"startTime"`
	// EndTime is when the run finished.
	EndTime metav1.Time `json:"endTime"`
	// Result is Success, Partial (some pages or devices missing), Failed
	// (nothing applied) or HeldRetraction (see retraction).
	Result SyncResult `json:"result"`
	// Mode is full (the whole inventory, which may retract) or incremental
	// (only what changed since the last good run); empty when the worker did
	// not say (an upstream client).
	//
	// +optional
	Mode SyncMode `json:"mode,omitempty"`
	// Counts are what the run did, device by device.
	Counts RunCounts `json:"counts"`
	// Error is the run's error, without secrets.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
	// Retraction is set when the brake held the run's retraction.
	//
	// +optional
	Retraction *HeldRetraction `json:"retraction,omitempty"`
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

	// DevicesDiscovered is how many devices the source reports available
	// after its last run: devices it reported in a run and that no full run
	// (or deletion) retracted since. Devices other sources report too count
	// once here and in each of those sources.
	//
	// +optional
	DevicesDiscovered int64 `json:"devicesDiscovered,omitempty"`

	// LastRunID is the UUID of the last finished sync run.
	//
	// +optional
	LastRunID string `json:"lastRunID,omitempty"`

	// LastRun is the last finished sync run: when, how, its result and what
	// it changed.
	//
	// +optional
	LastRun *SyncRun `json:"lastRun,omitempty"`

	// History holds the last finished runs, newest first, at most
	// spec.historyLimit of them.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	History []SyncRun `json:"history,omitempty"`

	// SyncRequest is what the gateway did with the last sync-now request
	// (annotation integrations.serviceradar.io/sync-requested-at).
	//
	// +optional
	SyncRequest *SyncRequestStatus `json:"syncRequest,omitempty"`

	// DryRun is what the last dry run (spec.dryRun) would have done; it is
	// kept after spec.dryRun is unset, to compare with the real run that
	// follows.
	//
	// +optional
	DryRun *DryRunStatus `json:"dryRun,omitempty"`

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
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.lastSyncResult`,description="Result of the last sync run: Success, Partial, Failed or HeldRetraction"
// +kubebuilder:printcolumn:name="Devices",type=integer,JSONPath=`.status.devicesDiscovered`,description="Devices the source reports available after its last run (status.devicesDiscovered)"
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`,description="When the last sync run finished"
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
