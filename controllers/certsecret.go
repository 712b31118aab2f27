package controllers

import (
	"context"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/workload"
)

// identityAnnotation records which identity a certificate Secret holds.
const identityAnnotation = "integrations.serviceradar.io/identity"

// issuerAnnotation records the KeyFingerprint of the CA that issued a
// certificate: a CA replaced (a Tenant deleted and created again, a root
// re-keyed) means the certificate is issued again.
const issuerAnnotation = "integrations.serviceradar.io/issuer"

// certSecret is a certificate Secret the manager keeps: a worker's SVID, an
// OnPrem service's onboarding bundle or the gateway's certificate. Its
// lifecycle is one for all three: read its metadata (never its contents),
// issue it again when it is missing, holds another identity, was issued by
// another CA, lacks an annotation it must carry or is due for renewal
// (annotation workload.RenewAtAnnotation), and apply it whole.
type certSecret struct {
	Key types.NamespacedName
	// Identity is the identity the certificate holds (identityAnnotation).
	Identity string
	// Issuer, when not empty, is the KeyFingerprint of the CA that must have
	// issued it, and the one recorded (issuerAnnotation).
	Issuer string
	// Want are annotations the Secret must carry with these values, written
	// with it: the inputs it was rendered from.
	Want map[string]string
}

// read returns the Secret's metadata, nil when it does not exist.
func (s *certSecret) read(ctx context.Context, r client.Reader) (*metav1.PartialObjectMetadata, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Get(ctx, s.Key, m); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", s.Key, err)
	}
	return m, nil
}

// renewIn says how long until the Secret m (nil: missing) is due for
// renewal; ok is false when it must be issued now.
func (s *certSecret) renewIn(m *metav1.PartialObjectMetadata, now time.Time) (left time.Duration, ok bool) {
	if m == nil {
		return 0, false
	}
	ann := m.GetAnnotations()
	renewAt, parsed := parseTime(ann[workload.RenewAtAnnotation])
	if !parsed || ann[identityAnnotation] != s.Identity || (s.Issuer != "" && ann[issuerAnnotation] != s.Issuer) {
		return 0, false
	}
	for k, v := range s.Want {
		if ann[k] != v {
			return 0, false
		}
	}
	left = renewAt.Sub(now)
	return left, left > 0
}

// issuedSecret is what a certSecret is written with.
type issuedSecret struct {
	Issued *ca.Issued
	// CA is the trust anchor written as ca.crt.
	CA   *ca.Authority
	Type corev1.SecretType
	// Labels, Annotations (besides the certSecret's own) and Data (besides
	// tls.crt, tls.key and ca.crt) of the Secret.
	Labels      map[string]string
	Annotations map[string]string
	Data        map[string][]byte
	// Owner, when set, is the Secret's controller.
	Owner *applymetav1.OwnerReferenceApplyConfiguration
}

// write applies the Secret under FieldOwner and returns when its
// certificate is due for renewal.
func (s *certSecret) write(ctx context.Context, c client.Client, w issuedSecret) (time.Time, error) {
	keyPEM, err := w.Issued.Key.MarshalPEM()
	if err != nil {
		return time.Time{}, fmt.Errorf("encoding the key of Secret %s: %w", s.Key, err)
	}
	data := map[string][]byte{corev1.TLSCertKey: w.Issued.CertPEM(), corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": w.CA.CertPEM()}
	maps.Copy(data, w.Data)
	renewAt := ca.RenewAt(w.Issued.Cert)
	ann := map[string]string{workload.RenewAtAnnotation: renewAt.UTC().Format(time.RFC3339), identityAnnotation: s.Identity}
	if s.Issuer != "" {
		ann[issuerAnnotation] = s.Issuer
	}
	maps.Copy(ann, s.Want)
	maps.Copy(ann, w.Annotations)
	sec := applycorev1.Secret(s.Key.Name, s.Key.Namespace).
		WithLabels(w.Labels).
		WithAnnotations(ann).
		WithType(w.Type).
		WithData(data)
	if w.Owner != nil {
		sec = sec.WithOwnerReferences(w.Owner)
	}
	if err := c.Apply(ctx, sec, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return time.Time{}, fmt.Errorf("applying Secret %s: %w", s.Key, err)
	}
	return renewAt, nil
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}
