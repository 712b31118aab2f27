package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceType says where a sync service runs.
//
// +kubebuilder:validation:Enum=SaaS;OnPrem
type ServiceType string

const (
	// ServiceTypeSaaS runs workers in this cluster, one Deployment per tenant.
	ServiceTypeSaaS ServiceType = "SaaS"
	// ServiceTypeOnPrem runs a worker at the tenant's edge from an onboarding bundle.
	ServiceTypeOnPrem ServiceType = "OnPrem"
)

// IdentityProvider says how in-cluster workers get their X.509 identity.
//
// +kubebuilder:validation:Enum=spire;certificate
type IdentityProvider string

const (
	// IdentityProviderSPIRE uses a SPIRE ClusterSPIFFEID and the Workload API.
	IdentityProviderSPIRE IdentityProvider = "spire"
	// IdentityProviderCertificate uses an SVID issued by the operator into a Secret.
	IdentityProviderCertificate IdentityProvider = "certificate"
)

// Phase summarizes a sync service's liveness.
//
// +kubebuilder:validation:Enum=Online;Offline;Degraded
type Phase string

const (
	// PhaseOnline means a heartbeat arrived within the last 2 minutes.
	PhaseOnline Phase = "Online"
	// PhaseOffline means no heartbeat arrived within the last 2 minutes.
	PhaseOffline Phase = "Offline"
	// PhaseDegraded means heartbeats arrive but some workers or sources fail.
	PhaseDegraded Phase = "Degraded"
)

// IdentitySpec chooses how in-cluster workers get their identity.
type IdentitySpec struct {
	// Provider is "spire" (a ClusterSPIFFEID; the operator falls back to
	// "certificate" when the SPIRE CRDs are absent) or "certificate" (an
	// operator-issued SVID kept in a Secret and renewed before expiry).
	//
	// +optional
	// +kubebuilder:default=spire
	Provider IdentityProvider `json:"provider,omitempty"`
}

// SyncServiceSpec declares a sync service: the workers that poll a tenant's
// integration sources and stream devices to the gateway.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.platform) && self.platform) || self.serviceType == 'SaaS'",message="a platform sync service must have serviceType SaaS",fieldPath=".platform",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="self.serviceType == 'OnPrem' || !has(self.gatewayAddress)",message="gatewayAddress applies only to serviceType OnPrem (SaaS workers reach the gateway inside the cluster)",fieldPath=".gatewayAddress",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.serviceType == 'SaaS' || (!has(self.image) && !has(self.resources) && !has(self.nodeSelector) && !has(self.tolerations))",message="image, resources, nodeSelector and tolerations apply only to serviceType SaaS",fieldPath=".serviceType",reason=FieldValueForbidden
type SyncServiceSpec struct {
	// ServiceType is SaaS (workers run in this cluster, one Deployment per
	// tenant with assigned sources) or OnPrem (the tenant runs the worker at its
	// edge from the onboarding bundle Secret "<name>-onboarding"). Immutable.
	//
	// +optional
	// +kubebuilder:default=SaaS
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="serviceType is immutable"
	ServiceType ServiceType `json:"serviceType,omitempty"`

	// Endpoint is where the service can be reached, for information only (for
	// example the edge site's address of an OnPrem worker).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Endpoint string `json:"endpoint,omitempty"`

	// GatewayAddress is the host:port at which an OnPrem service's worker, at
	// the tenant's edge, reaches the platform's agent-gateway (its
	// LoadBalancer, NodePort or TLS-passthrough route): it goes into the
	// onboarding bundle, and the worker checks the host on the gateway's
	// certificate, so the host must be one of the names the manager puts on
	// that certificate (chart gateway.external.address and
	// gateway.tls.dnsNames). Empty: the manager's default
	// (--edge-gateway-address); when that is empty too, no bundle is issued
	// and the Ready condition says so (reason EdgeGatewayAddressUnknown).
	// OnPrem only.
	//
	// +optional
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="self.matches('^([[][0-9a-fA-F:.]+[]]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$$')",message="must be host:port, such as sync.example.com:443 or [2001:db8::1]:443"
	GatewayAddress string `json:"gatewayAddress,omitempty"`

	// Platform marks the platform sync service, which may serve integration
	// sources of every tenant. Only allowed in a namespace of the platform
	// tenant, and only with serviceType SaaS.
	//
	// +optional
	// +kubebuilder:default=false
	Platform bool `json:"platform,omitempty"`

	// Capabilities are the integration types this service may run. Empty means
	// all of them.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Enum=armis;netbox;faker
	Capabilities []string `json:"capabilities,omitempty"`

	// Partition is the network partition the service's workers belong to. It
	// appears in their certificate identities, so it is a DNS label.
	//
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Partition string `json:"partition,omitempty"`

	// Paused freezes the service: the operator creates, changes and deletes none
	// of its workers, identities or onboarding bundles until it is unpaused, and
	// reports the pause in the Ready condition.
	//
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Image overrides the operator's default worker image (SaaS only).
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// Resources are the worker container's requests and limits (SaaS only).
	// Defaults are set by the operator when empty.
	//
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector constrains the nodes worker pods run on (SaaS only).
	//
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let worker pods run on tainted nodes (SaaS only).
	//
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Identity chooses how in-cluster workers get their X.509 identity.
	//
	// +optional
	// +kubebuilder:default={provider: spire}
	Identity IdentitySpec `json:"identity,omitempty"`
}

// WorkerStatus reports one per-tenant worker Deployment of a SaaS sync service.
type WorkerStatus struct {
	// Tenant is the slug of the tenant the worker serves.
	Tenant string `json:"tenant"`
	// Deployment is the name of the worker Deployment.
	Deployment string `json:"deployment"`
	// ComponentID is the worker's component id in its certificate identity.
	// +optional
	ComponentID string `json:"componentID,omitempty"`
	// ReadyReplicas is the number of ready worker pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Replicas is the number of worker pods the Deployment asks for.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
}

// EdgeCertificate is one edge certificate issued for an OnPrem service.
type EdgeCertificate struct {
	// Serial is the certificate's serial number, in lower-case hex.
	// +kubebuilder:validation:MaxLength=64
	Serial string `json:"serial"`
	// NotBefore is when the certificate became valid.
	NotBefore metav1.Time `json:"notBefore"`
	// NotAfter is when the certificate expires.
	NotAfter metav1.Time `json:"notAfter"`
}

// EdgeCertificateRequest is a certificate signing request that an OnPrem
// service's edge worker sent over its ControlStream, as the gateway
// recorded it for the manager. Everything in it is public.
type EdgeCertificateRequest struct {
	// ID is the SHA-256 (hex) of the request's DER.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// CSR is the PKCS#10 certificate request (PEM), signed by the new key
	// the edge made and keeps.
	// +kubebuilder:validation:MaxLength=4096
	CSR string `json:"csr"`
	// PresentedCertificate is the edge certificate (PEM) of the connection
	// that carried the request.
	// +kubebuilder:validation:MaxLength=4096
	PresentedCertificate string `json:"presentedCertificate"`
	// Proof is the signature (base64) of the request made with the presented
	// certificate's key: only a holder of a current edge certificate of this
	// service can make it, not the gateway that relays it.
	// +kubebuilder:validation:MaxLength=1024
	Proof string `json:"proof"`
	// RequestedAt is when the gateway received the request (to the
	// microsecond: the same request sent twice is two requests).
	RequestedAt metav1.MicroTime `json:"requestedAt"`
}

// EdgeCertificateRenewal is the manager's answer to an edge certificate request.
type EdgeCertificateRenewal struct {
	// RequestID is the id of the request answered.
	// +kubebuilder:validation:MaxLength=64
	RequestID string `json:"requestID"`
	// RequestedAt is the requestedAt of the request answered: the same
	// request sent again is a new one, refused as a replay.
	RequestedAt metav1.MicroTime `json:"requestedAt"`
	// Issued says whether a certificate was issued.
	Issued bool `json:"issued"`
	// Reason is Issued, or the rule that refused the request.
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason"`
	// Message explains the answer.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// Certificate is the issued certificate (PEM), followed by the tenant CA
	// that signed it.
	// +kubebuilder:validation:MaxLength=8192
	// +optional
	Certificate string `json:"certificate,omitempty"`
	// Serial is the issued certificate's serial number, in lower-case hex.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Serial string `json:"serial,omitempty"`
	// NotAfter is when the issued certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// AnsweredAt is when the manager answered.
	AnsweredAt metav1.Time `json:"answeredAt"`
	// AnsweredRequests are the ids of the requests answered before this one,
	// newest first: any of them sent again is refused as a replay.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=64
	// +optional
	AnsweredRequests []string `json:"answeredRequests,omitempty"`
}

// SyncServiceStatus is what the operator and the gateway learned about a sync service.
type SyncServiceStatus struct {
	// ObservedGeneration is the metadata.generation the status was computed from.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase is Online when a heartbeat arrived within the last 2 minutes,
	// Degraded when heartbeats arrive but something fails, Offline otherwise.
	//
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// LastHeartbeatAt is when the gateway last received a heartbeat from one of
	// the service's workers.
	//
	// +optional
	LastHeartbeatAt *metav1.Time `json:"lastHeartbeatAt,omitempty"`

	// Capabilities are the capabilities the worker reported in its Hello.
	//
	// +optional
	// +listType=set
	Capabilities []string `json:"capabilities,omitempty"`

	// Version is the worker version reported in its Hello.
	//
	// +optional
	Version string `json:"version,omitempty"`

	// Workers lists the per-tenant worker Deployments of a SaaS service.
	//
	// +optional
	// +listType=map
	// +listMapKey=tenant
	Workers []WorkerStatus `json:"workers,omitempty"`

	// WorkersReady is "<ready>/<desired>": the ready worker pods of all the
	// service's worker Deployments, and how many they ask for. Empty for an
	// OnPrem service, whose workers run at the tenant's edge.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=32
	WorkersReady string `json:"workersReady,omitempty"`

	// OnboardingSecretName is the Secret holding an OnPrem service's onboarding
	// bundle (worker config, client certificate and CA bundle).
	//
	// +optional
	OnboardingSecretName string `json:"onboardingSecretName,omitempty"`

	// EdgeCertificates are the edge certificates of an OnPrem service that
	// the gateway accepts, newest first: the one in the onboarding bundle and
	// those it replaced that have not expired, so that an edge still running
	// the previous certificate keeps working after a renewal. Deleting the
	// onboarding Secret issues a new certificate and keeps only it (see
	// edgeIdentitySince).
	//
	// +optional
	// +listType=map
	// +listMapKey=serial
	// +kubebuilder:validation:MaxItems=4
	EdgeCertificates []EdgeCertificate `json:"edgeCertificates,omitempty"`

	// EdgeIdentitySince is when an OnPrem service's edge identity was last
	// issued afresh: its first certificate, or a new one after the
	// onboarding Secret was deleted. The gateway refuses the service's edge
	// certificates issued before it, so deleting the Secret revokes every
	// certificate handed out until then. Renewals keep it.
	//
	// +optional
	EdgeIdentitySince *metav1.Time `json:"edgeIdentitySince,omitempty"`

	// CertificateRequest is the last certificate signing request of an OnPrem
	// service's edge worker, renewing its certificate over its ControlStream
	// (written by the gateway).
	//
	// +optional
	CertificateRequest *EdgeCertificateRequest `json:"certificateRequest,omitempty"`

	// CertificateRenewal is the manager's answer to the last certificate
	// request: the certificate issued for the edge's new key, or why none
	// was (also the CertificateRenewal condition and an event).
	//
	// +optional
	CertificateRenewal *EdgeCertificateRenewal `json:"certificateRenewal,omitempty"`

	// Conditions describe the service's state: Ready, Available, Degraded,
	// Progressing and, for an OnPrem service that renewed its certificate,
	// CertificateRenewal.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// SyncService is a sync service: in-cluster (SaaS) workers run by the
// operator, or an on-prem worker onboarded at a tenant's edge.
//
// Its name is a DNS label (at most 63 characters): it appears in label
// values, component ids and certificate identities.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ss;syncsvc,categories=serviceradar
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="the name of a SyncService must be a DNS label (at most 63 lower-case letters, digits and '-'): it appears in label values and certificate identities",reason=FieldValueInvalid
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.serviceType`
// +kubebuilder:printcolumn:name="Platform",type=boolean,JSONPath=`.spec.platform`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Workers",type=string,JSONPath=`.status.workersReady`,description="Ready worker pods / desired worker pods (SaaS only)"
// +kubebuilder:printcolumn:name="Last Heartbeat",type=date,JSONPath=`.status.lastHeartbeatAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SyncService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired sync service.
	// +optional
	// +kubebuilder:default={}
	Spec SyncServiceSpec `json:"spec,omitempty"`
	// Status is what the operator and gateway observed.
	// +optional
	Status SyncServiceStatus `json:"status,omitempty"`
}

// SyncServiceList is a list of SyncServices.
//
// +kubebuilder:object:root=true
type SyncServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the sync services.
	Items []SyncService `json:"items"`
}
