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
