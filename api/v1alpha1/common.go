package v1alpha1

// TenantLabel is the namespace label that assigns a namespace to a tenant:
// integrations.serviceradar.io/tenant=<slug>. SyncServices and
// IntegrationSources in a namespace without it are never served.
const TenantLabel = "integrations.serviceradar.io/tenant"

// DefaultPlatformSlug is the reserved slug of the platform tenant unless the
// manager is configured with another one.
const DefaultPlatformSlug = "platform"

// DefaultPartition is the partition used when none is given.
const DefaultPartition = "default"

// Condition types shared by the kinds of this API.
const (
	// ConditionReady is true when the object is fully reconciled and usable.
	ConditionReady = "Ready"
	// ConditionSynced is true on an IntegrationSource whose last sync run succeeded.
	ConditionSynced = "Synced"
	// ConditionAvailable is true on a SyncService whose workers are up and heartbeating.
	ConditionAvailable = "Available"
	// ConditionDegraded is true on a SyncService that runs with a fault.
	ConditionDegraded = "Degraded"
	// ConditionProgressing is true while a SyncService rolls out workers or identities.
	ConditionProgressing = "Progressing"
)

// Condition reasons used across kinds. Controllers may add more specific ones.
const (
	// ReasonReconciled means everything the object asks for is in place.
	ReasonReconciled = "Reconciled"
	// ReasonTenantNotFound means the namespace has no tenant label, or names an unknown tenant.
	ReasonTenantNotFound = "TenantNotFound"
	// ReasonSecretNotFound means the referenced credentials Secret is missing.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretInvalid means the credentials Secret lacks a key its type needs.
	ReasonSecretInvalid = "SecretInvalid"
	// ReasonSecretNotAllowed means the credentials Secret is one the operator
	// keeps (a CA, an identity, an onboarding bundle): it is never used as
	// credentials nor given to the gateway.
	ReasonSecretNotAllowed = "SecretNotAllowed"
	// ReasonSyncServiceNotFound means the referenced SyncService is missing.
	ReasonSyncServiceNotFound = "SyncServiceNotFound"
	// ReasonSyncServiceNotAllowed means the SyncService may not serve this tenant.
	ReasonSyncServiceNotAllowed = "SyncServiceNotAllowed"
	// ReasonInvalidSpec means a rule that the schema cannot express failed.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonPaused means the object is paused by its spec.
	ReasonPaused = "Paused"
)
