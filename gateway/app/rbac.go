package app

// The gateway's RBAC (generated into config/rbac/gateway by `make manifests`):
// it reads the CRs and namespaces and writes only the runtime fields of CR
// status, the retraction finalizer of IntegrationSources and the drop-schema
// finalizer of Tenants (patch).
//
// It has no access to Secrets here. In each tenant namespace the manager
// grants it (Role and RoleBinding sync-operator-gateway-credentials, see
// controllers.GatewayAccessReconciler) get, list and watch on exactly the
// Secrets that IntegrationSources reference, never the operator's CA and
// identity Secrets; the catalog watches each of those by name. Its own
// certificate is a mounted file, not read through the API.

// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants;syncservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants,verbs=patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=tenants/finalizers,verbs=update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=integrationsources/finalizers,verbs=update
// +kubebuilder:rbac:groups=integrations.serviceradar.io,resources=syncservices/status;integrationsources/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
