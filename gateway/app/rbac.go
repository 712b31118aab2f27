package app

// The gateway's RBAC (generated into config/rbac/gateway by `make manifests`):
// it reads the CRs, namespaces and Secrets (data only of those sources
// reference; list/watch serve the metadata-only Secret informer) and writes
// only the runtime fields of CR status, and the retraction finalizer of
// IntegrationSources (patch).

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants;syncservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources/finalizers,verbs=update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices/status;integrationsources/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
