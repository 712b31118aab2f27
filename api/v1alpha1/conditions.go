package v1alpha1

// Condition types. Every kind has Ready; the others are per kind. The
// manager (field manager sync-operator-manager) owns Ready and the
// SyncService conditions; the gateway owns Synced.
const (
	// ConditionReady is true when the object is fully reconciled and usable.
	ConditionReady = "Ready"
	// ConditionSynced is true on an IntegrationSource whose last sync run
	// succeeded (written by the gateway; reasons ReasonRun*).
	ConditionSynced = "Synced"
	// ConditionAvailable is true on a SyncService whose workers heartbeat
	// (reasons ReasonHeartbeat, ReasonNoHeartbeat).
	ConditionAvailable = "Available"
	// ConditionDegraded is true on a SyncService that heartbeats while a
	// worker is not ready; its reason is the phase (PhaseOnline,
	// PhaseOffline or PhaseDegraded).
	ConditionDegraded = "Degraded"
	// ConditionProgressing is true while a SyncService's workers start
	// (reasons ReasonWorkersStarting, ReasonWorkersReady, ReasonNoWorkers).
	ConditionProgressing = "Progressing"
	// ConditionCertificateRenewal reports on an OnPrem SyncService the
	// answer to its edge worker's last certificate request: True (reason
	// Issued) or False (reason: the rule that refused it, see package
	// identity/renewal).
	ConditionCertificateRenewal = "CertificateRenewal"
)

// Reasons of the Ready condition, shared by the kinds.
const (
	// ReasonReconciled means everything the object asks for is in place.
	ReasonReconciled = "Reconciled"
	// ReasonTenantNotFound means the namespace has no tenant label, or names an unknown tenant.
	ReasonTenantNotFound = "TenantNotFound"
	// ReasonInvalidSpec means a rule that the schema cannot express failed.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonPaused means the object is paused by its spec.
	ReasonPaused = "Paused"
)

// Reasons of an IntegrationSource's Ready condition.
const (
	// ReasonSecretNotFound means the referenced credentials Secret is missing.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretInvalid means the credentials Secret lacks a key its type needs.
	ReasonSecretInvalid = "SecretInvalid"
	// ReasonSecretNotAllowed means the credentials Secret is one the operator
	// keeps (a CA, an identity, an onboarding bundle): it is never used as
	// credentials nor given to the gateway.
	ReasonSecretNotAllowed = "SecretNotAllowed"
	// ReasonSyncServiceNotFound means the referenced SyncService is missing,
	// or is not one the source's tenant may use (MayServe).
	ReasonSyncServiceNotFound = "SyncServiceNotFound"
	// ReasonSyncServiceNotAllowed means the SyncService's capabilities do
	// not include the source's type (MayServe).
	ReasonSyncServiceNotAllowed = "SyncServiceNotAllowed"
)

// Reasons of an IntegrationSource's Synced condition: "Run" and the run's
// SyncResult (SyncedReason).
const (
	// ReasonRunSuccess means the last run succeeded.
	ReasonRunSuccess = "Run" + string(SyncResultSuccess)
	// ReasonRunPartial means the last run delivered devices but failed part way.
	ReasonRunPartial = "Run" + string(SyncResultPartial)
	// ReasonRunFailed means the last run delivered no devices and failed.
	ReasonRunFailed = "Run" + string(SyncResultFailed)
	// ReasonRunHeldRetraction means the retraction brake held the last run's retraction.
	ReasonRunHeldRetraction = "Run" + string(SyncResultHeldRetraction)
)

// SyncedReason is the reason of the Synced condition after a run with result r.
func SyncedReason(r SyncResult) string { return "Run" + string(r) }

// Reasons of a Tenant's Ready condition.
const (
	// ReasonReservedSlug means the tenant breaks the reserved platform slug rule.
	ReasonReservedSlug = "ReservedSlug"
	// ReasonDuplicatePlatformTenant means an older platform tenant exists.
	ReasonDuplicatePlatformTenant = "DuplicatePlatformTenant"
	// ReasonPlatformIdentity means the platform UUID or CA could not be read or created.
	ReasonPlatformIdentity = "PlatformIdentityUnavailable"
	// ReasonDuplicateSlug means another Tenant claims the same slug: neither
	// is served until one of them is deleted.
	ReasonDuplicateSlug = "DuplicateSlug"
	// ReasonInvalidSlug means the slug is longer than MaxSlugLength (a
	// Tenant stored before the limit): names derived from it would not fit.
	ReasonInvalidSlug = "InvalidSlug"
)

// Reasons of a SyncService's Ready condition.
const (
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
	// ReasonEdgeGatewayAddressUnknown means an OnPrem SyncService has no
	// address at which its edge worker can reach the gateway
	// (spec.gatewayAddress, or the manager's --edge-gateway-address), so no
	// bundle is issued.
	ReasonEdgeGatewayAddressUnknown = "EdgeGatewayAddressUnknown"
	// ReasonEdgeGatewayAddressNotOnCertificate means the host of that
	// address is not on the gateway certificate the manager issues.
	ReasonEdgeGatewayAddressNotOnCertificate = "EdgeGatewayAddressNotOnCertificate"
)

// Reasons of a SyncService's Available and Progressing conditions.
const (
	// ReasonHeartbeat means a worker heartbeat arrived within the online
	// window (two minutes).
	ReasonHeartbeat = "HeartbeatReceived"
	// ReasonNoHeartbeat means none did.
	ReasonNoHeartbeat = "NoHeartbeat"
	// ReasonWorkersStarting means some worker Deployments have no ready pod.
	ReasonWorkersStarting = "WorkersStarting"
	// ReasonWorkersReady means every worker Deployment has a ready pod.
	ReasonWorkersReady = "WorkersReady"
	// ReasonNoWorkers means the SyncService runs no workers here (OnPrem, or
	// no tenant has sources assigned).
	ReasonNoWorkers = "NoWorkers"
)
