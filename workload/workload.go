// Package workload renders what a SyncService runs: for SaaS, one worker per
// tenant (ServiceAccount, bootstrap ConfigMap, identity and Deployment, with
// restricted pod security); for OnPrem, the onboarding bundle a tenant runs
// `worker --config` with. It only builds objects; the controller applies them.
package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	applyappsv1 "k8s.io/client-go/applyconfigurations/apps/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
)

// Labels and annotations on rendered objects.
const (
	// SyncServiceLabel names the SyncService an object belongs to.
	SyncServiceLabel = "integrations.serviceradar.io/syncservice"
	// SyncServiceNamespaceLabel names the namespace of that SyncService, on
	// cluster-scoped objects.
	SyncServiceNamespaceLabel = "integrations.serviceradar.io/syncservice-namespace"
	// WorkerTenantLabel names the tenant a worker object serves.
	WorkerTenantLabel = "integrations.serviceradar.io/worker-tenant"
	// HashAnnotation is the hash of the rendered object; an object whose hash
	// matches is not applied again, so a steady state makes no writes.
	HashAnnotation = "integrations.serviceradar.io/rendered-hash"
	// RenewAtAnnotation is when the certificate in a Secret must be renewed (RFC 3339).
	RenewAtAnnotation = "integrations.serviceradar.io/renew-at"
)

// Paths inside worker pods (the bootstrap file's are bootstrap.Dir and
// bootstrap.FileName).
const (
	IdentityDir     = "/var/run/serviceradar/identity"
	WorkloadAPIDir  = "/spiffe-workload-api"
	WorkloadAPISock = "unix://" + WorkloadAPIDir + "/spire-agent.sock"
	DefaultImage    = "ghcr.io/serviceradar/sync-operator:latest"
	workerUID       = 65532
	spiffeCSIDriver = "csi.spiffe.io"
)

// Name is a DNS-label object name made of parts: their readable join,
// shortened to fit, followed by a hash of the parts as a tuple. The hash
// makes the name injective: joining alone would give one name to
// ("sync", "a-b", "c") and ("sync", "a", "b-c"), and shortening alone would
// give one name to every tuple that shares its first characters.
func Name(parts ...string) string {
	return v1alpha1.HashedName(strings.Join(parts, "-"), parts...)
}

// Worker is everything one SaaS worker Deployment needs.
type Worker struct {
	SyncService *v1alpha1.SyncService
	TenantSlug  string
	ComponentID string
	Image       string
	// SPIRE selects a Workload API identity (ClusterSPIFFEID + SPIFFE CSI
	// driver); otherwise an operator-issued SVID is mounted from IdentitySecret.
	SPIRE    bool
	SPIFFEID string
	// SPIREClassName is the className of the worker's ClusterSPIFFEID: the
	// class of the SPIRE controller manager that is to act on it (empty: the
	// field is left out, for a controller manager that watches classless
	// objects).
	SPIREClassName string
	Bootstrap      bootstrap.Config
}

// ObjectName is the name of the worker's Deployment, ServiceAccount and ConfigMap.
func (w Worker) ObjectName() string { return Name("sync", w.SyncService.Name, w.TenantSlug) }

// IdentitySecretName is the Secret holding the operator-issued SVID.
func (w Worker) IdentitySecretName() string {
	return Name("sync", w.SyncService.Name, w.TenantSlug, "svid")
}

// Labels select the worker's objects and pods.
func (w Worker) Labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name": "sync-worker",
		platform.ManagedByLabel:  platform.ManagedBy,
		SyncServiceLabel:         w.SyncService.Name,
		WorkerTenantLabel:        w.TenantSlug,
	}
}

// OwnerReference makes the SyncService the controller of a rendered object,
// so deleting it garbage-collects its workers and bundles.
func OwnerReference(ss *v1alpha1.SyncService) *applymetav1.OwnerReferenceApplyConfiguration {
	return applymetav1.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).WithKind("SyncService").
		WithName(ss.Name).WithUID(ss.UID).WithController(true).WithBlockOwnerDeletion(true)
}

// ServiceAccount is the worker's own ServiceAccount; it gets no API rights.
func (w Worker) ServiceAccount() *applycorev1.ServiceAccountApplyConfiguration {
	return applycorev1.ServiceAccount(w.ObjectName(), w.SyncService.Namespace).
		WithLabels(w.Labels()).WithOwnerReferences(OwnerReference(w.SyncService)).
		WithAutomountServiceAccountToken(false)
}

// ConfigMap holds the worker's bootstrap file.
func (w Worker) ConfigMap() (*applycorev1.ConfigMapApplyConfiguration, error) {
	data, err := w.Bootstrap.JSON()
	if err != nil {
		return nil, err
	}
	return applycorev1.ConfigMap(w.ObjectName(), w.SyncService.Namespace).
		WithLabels(w.Labels()).WithOwnerReferences(OwnerReference(w.SyncService)).
		WithData(map[string]string{bootstrap.FileName: string(data)}), nil
}

func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// Deployment runs one worker pod under the restricted pod security standard.
func (w Worker) Deployment(configHash string) *applyappsv1.DeploymentApplyConfiguration {
	ss := w.SyncService
	res := defaultResources()
	if ss.Spec.Resources != nil && (len(ss.Spec.Resources.Requests) > 0 || len(ss.Spec.Resources.Limits) > 0) {
		res = *ss.Spec.Resources
	}
	identityVolume := applycorev1.Volume().WithName("identity")
	identityMount := applycorev1.VolumeMount().WithName("identity").WithReadOnly(true)
	if w.SPIRE {
		identityVolume.WithCSI(applycorev1.CSIVolumeSource().WithDriver(spiffeCSIDriver).WithReadOnly(true))
		identityMount.WithMountPath(WorkloadAPIDir)
	} else {
		identityVolume.WithSecret(applycorev1.SecretVolumeSource().WithSecretName(w.IdentitySecretName()).WithDefaultMode(0o440))
		identityMount.WithMountPath(IdentityDir)
	}
	container := applycorev1.Container().
		WithName("worker").WithImage(w.Image).
		// The image carries /manager, /gateway and /worker; this pod runs the worker.
		WithCommand("/worker").WithArgs("--config="+bootstrap.Path).
		// The Go runtime collects harder as the heap nears the container's memory limit.
		WithEnv(applycorev1.EnvVar().WithName("GOMEMLIMIT").WithValueFrom(applycorev1.EnvVarSource().
			WithResourceFieldRef(applycorev1.ResourceFieldSelector().WithContainerName("worker").WithResource("limits.memory")))).
		WithResources(applycorev1.ResourceRequirements().WithRequests(res.Requests).WithLimits(res.Limits)).
		WithVolumeMounts(
			applycorev1.VolumeMount().WithName("bootstrap").WithMountPath(bootstrap.Dir).WithReadOnly(true),
			identityMount,
			applycorev1.VolumeMount().WithName("tmp").WithMountPath("/tmp"),
		).
		WithSecurityContext(applycorev1.SecurityContext().
			WithAllowPrivilegeEscalation(false).WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).WithRunAsUser(workerUID).WithRunAsGroup(workerUID).
			WithCapabilities(applycorev1.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(applycorev1.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	pod := applycorev1.PodSpec().
		WithServiceAccountName(w.ObjectName()).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithSecurityContext(applycorev1.PodSecurityContext().
			WithRunAsNonRoot(true).WithRunAsUser(workerUID).WithRunAsGroup(workerUID).WithFSGroup(workerUID).
			WithSeccompProfile(applycorev1.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(
			applycorev1.Volume().WithName("bootstrap").WithConfigMap(applycorev1.ConfigMapVolumeSource().WithName(w.ObjectName())),
			identityVolume,
			applycorev1.Volume().WithName("tmp").WithEmptyDir(applycorev1.EmptyDirVolumeSource().WithSizeLimit(resource.MustParse("64Mi"))),
		)
	if len(ss.Spec.NodeSelector) > 0 {
		pod.WithNodeSelector(ss.Spec.NodeSelector)
	}
	for _, t := range ss.Spec.Tolerations {
		tol := applycorev1.Toleration().WithKey(t.Key).WithOperator(t.Operator).WithValue(t.Value).WithEffect(t.Effect)
		if t.TolerationSeconds != nil {
			tol.WithTolerationSeconds(*t.TolerationSeconds)
		}
		pod.WithTolerations(tol)
	}
	return applyappsv1.Deployment(w.ObjectName(), ss.Namespace).
		WithLabels(w.Labels()).WithOwnerReferences(OwnerReference(ss)).
		WithSpec(applyappsv1.DeploymentSpec().
			WithReplicas(1).
			// One worker pod at a time: a rolling update would run the old
			// and the new pod side by side, two runs of every source at once.
			WithStrategy(applyappsv1.DeploymentStrategy().WithType(appsv1.RecreateDeploymentStrategyType)).
			WithSelector(applymetav1.LabelSelector().WithMatchLabels(w.Labels())).
			WithTemplate(applycorev1.PodTemplateSpec().
				WithLabels(w.Labels()).
				// A changed bootstrap rolls the pod.
				WithAnnotations(map[string]string{"integrations.serviceradar.io/bootstrap-hash": configHash}).
				WithSpec(pod)))
}

// ClusterSPIFFEIDGVK is the SPIRE controller manager's ClusterSPIFFEID kind.
var ClusterSPIFFEIDGVK = schema.GroupVersionKind{Group: "spire.spiffe.io", Version: "v1alpha1", Kind: "ClusterSPIFFEID"}

// ClusterSPIFFEID asks the SPIRE controller manager of class
// w.SPIREClassName to issue the worker's SVID to its pods only.
func (w Worker) ClusterSPIFFEID() *unstructured.Unstructured {
	spec := map[string]any{
		"spiffeIDTemplate": w.SPIFFEID,
		"podSelector":      map[string]any{"matchLabels": toAny(w.Labels())},
		"namespaceSelector": map[string]any{"matchLabels": map[string]any{
			"kubernetes.io/metadata.name": w.SyncService.Namespace,
		}},
		"hint": w.ComponentID,
	}
	if w.SPIREClassName != "" {
		spec["className"] = w.SPIREClassName
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(ClusterSPIFFEIDGVK)
	u.SetName(Name(w.SyncService.Namespace, w.ObjectName()))
	labels := w.Labels()
	labels[SyncServiceNamespaceLabel] = w.SyncService.Namespace
	u.SetLabels(labels)
	return u
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Hash is a short stable hash of any JSON-encodable value.
func Hash(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
