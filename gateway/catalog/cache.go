package catalog

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions are the options of the informer cache the catalog reads and
// watches. Managed fields are stripped from every object, and of a Secret
// only what the catalog needs is kept: the Secret informer watches every
// namespace, and annotations can hold a Secret's data (kubectl apply keeps
// the whole object in kubectl.kubernetes.io/last-applied-configuration).
func CacheOptions(scheme *runtime.Scheme) ctrlcache.Options {
	return ctrlcache.Options{
		Scheme:           scheme,
		DefaultTransform: ctrlcache.TransformStripManagedFields(),
		ByObject:         map[client.Object]ctrlcache.ByObject{secretMeta(): {Transform: slimSecret}},
	}
}

// slimSecret is the cache transform of Secrets: it keeps name, namespace,
// uid and resource version, and drops everything else
// (annotations, labels, owner references, managed fields and, should a
// typed Secret informer ever be started, the data).
func slimSecret(in any) (any, error) {
	slim := func(m *metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	}
	switch o := in.(type) {
	case *metav1.PartialObjectMetadata:
		return &metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: slim(&o.ObjectMeta)}, nil
	case *corev1.Secret:
		return &corev1.Secret{TypeMeta: o.TypeMeta, ObjectMeta: slim(&o.ObjectMeta), Type: o.Type}, nil
	default:
		return in, nil
	}
}
