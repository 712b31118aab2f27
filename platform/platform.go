// Package platform keeps the platform's persistent identity in Secrets of the
// operator namespace: the platform tenant's UUID (random, non-nil, created
// once and kept across restarts and upgrades), the platform root CA and the
// per-tenant intermediate CAs. It also derives every other tenant's UUID.
package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
)

// Secret names and keys in the operator namespace.
const (
	// IdentitySecret holds the platform tenant's UUID under TenantIDKey.
	IdentitySecret = "serviceradar-platform-identity"
	// TenantIDKey is the key of the platform tenant UUID.
	TenantIDKey = "tenant-id"
	// RootCASecret holds the platform root CA.
	RootCASecret = "serviceradar-root-ca"
	// TenantCASecretPrefix prefixes each tenant CA Secret: <prefix><slug>.
	TenantCASecretPrefix = "serviceradar-tenant-ca-"
	// ComponentLabel marks the Secrets this package manages.
	ComponentLabel = "app.kubernetes.io/component"
	// ManagedByLabel marks objects the operator manages.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of ManagedByLabel.
	ManagedBy = "sync-operator"
	// BackupLabel (value "true") marks the Secrets to back up with the
	// custom resources: the platform identity, the root CA and every tenant
	// CA. Without them a restored cluster cannot keep its tenants' IDs or
	// accept the edge certificates issued before.
	BackupLabel = "integrations.serviceradar.io/backup"
)

// ErrNilPlatformUUID refuses a persisted platform UUID that is the nil UUID.
var ErrNilPlatformUUID = errors.New("the platform tenant UUID must not be the nil UUID")

// TenantID is a non-platform tenant's UUID: UUIDv5 of the platform tenant's
// UUID and the slug, stable across deletes and re-creates.
func TenantID(platformID uuid.UUID, slug string) uuid.UUID {
	return uuid.NewSHA1(platformID, []byte(slug))
}

// Store reads and creates the platform Secrets. Reads go to the API server
// directly (Reader), so no Secret cache is needed.
type Store struct {
	// Client writes Secrets.
	Client client.Client
	// Reader reads Secrets, typically the manager's uncached API reader.
	Reader client.Reader
	// Namespace is the operator namespace.
	Namespace string
	// Now is the clock for certificates; nil means time.Now.
	Now func() time.Time
	// Verified makes PlatformTenantID and RootCA serve only the identity the
	// bootstrap checked against the cluster (EnsurePlatformTenantID,
	// EnsureRootCA): until then, and when a Secret changed since, they
	// return ErrIdentityUnchecked. The manager sets it; tools reading the
	// Secrets directly leave it off.
	Verified bool

	mu          sync.Mutex
	refusals    map[string]error // Secret name -> why the bootstrap did not mint it
	checkedID   uuid.UUID        // the platform UUID the bootstrap checked
	checkedCA   []byte           // the root CA certificate the bootstrap checked
	checkedFP   string           // its identity.KeyFingerprint
	checkedRoot *ca.Authority    // and the authority itself
}

func (s *Store) get(ctx context.Context, name string) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := s.Reader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: name}, sec)
	if err != nil {
		return nil, err //nolint:wrapcheck // callers test for NotFound
	}
	return sec, nil
}

// getOrCreate returns the Secret, creating it with data from newData when missing.
// When another replica created it first, that one wins.
func (s *Store) getOrCreate(ctx context.Context, name, component string, newData func() (map[string][]byte, error)) (*corev1.Secret, error) {
	sec, err := s.get(ctx, name)
	if err == nil {
		return sec, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, name, err)
	}
	data, err := newData()
	if err != nil {
		return nil, err
	}
	sec = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: map[string]string{
			ManagedByLabel: ManagedBy, ComponentLabel: component, BackupLabel: "true",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if err := s.Client.Create(ctx, sec); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return s.get(ctx, name)
		}
		return nil, fmt.Errorf("creating Secret %s/%s: %w", s.Namespace, name, err)
	}
	return sec, nil
}

// PlatformTenantID returns the persisted platform tenant UUID. It never
// creates one (only the bootstrap does, see EnsurePlatformTenantID): a
// missing Secret is ErrIdentityMissing, with the bootstrap's reason when it
// refused to mint a new identity. A stored nil or malformed UUID is refused,
// never replaced, so that tenant UUIDs derived from it never change silently.
func (s *Store) PlatformTenantID(ctx context.Context) (uuid.UUID, error) {
	sec, err := s.get(ctx, IdentitySecret)
	if apierrors.IsNotFound(err) {
		return uuid.Nil, s.missing(ErrIdentityMissing, IdentitySecret)
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, IdentitySecret, err)
	}
	id, err := s.parseID(sec)
	if err != nil || !s.Verified {
		return id, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != s.checkedID {
		return uuid.Nil, s.uncheckedLocked(IdentitySecret)
	}
	return id, nil
}

func (s *Store) parseID(sec *corev1.Secret) (uuid.UUID, error) {
	id, err := uuid.ParseBytes(sec.Data[TenantIDKey])
	if err != nil {
		return uuid.Nil, fmt.Errorf("secret %s/%s key %s is not a UUID: %w", s.Namespace, IdentitySecret, TenantIDKey, err)
	}
	if id == uuid.Nil {
		return uuid.Nil, fmt.Errorf("secret %s/%s key %s: %w", s.Namespace, IdentitySecret, TenantIDKey, ErrNilPlatformUUID)
	}
	return id, nil
}

func caData(a *ca.Authority) (map[string][]byte, error) {
	key, err := a.Key.MarshalPEM()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{corev1.TLSCertKey: a.CertPEM(), corev1.TLSPrivateKeyKey: key}, nil
}

func (s *Store) load(sec *corev1.Secret) (*ca.Authority, error) {
	a, err := ca.Load(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], s.Now)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s does not hold a CA: %w", sec.Namespace, sec.Name, err)
	}
	return a, nil
}

// RootCA returns the platform root CA. It never creates one (only the
// bootstrap does, see EnsureRootCA): a missing Secret is ErrRootCAMissing,
// with the bootstrap's reason when it refused to mint a new root.
//
// With Verified, the root the bootstrap checked is served from memory (no
// read per call); the bootstrap's periodic check notices a Secret that is
// gone or changed and withdraws it.
func (s *Store) RootCA(ctx context.Context) (*ca.Authority, error) {
	if s.Verified {
		s.mu.Lock()
		root := s.checkedRoot
		s.mu.Unlock()
		if root != nil {
			return root, nil
		}
	}
	sec, err := s.get(ctx, RootCASecret)
	if apierrors.IsNotFound(err) {
		return nil, s.missing(ErrRootCAMissing, RootCASecret)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, RootCASecret, err)
	}
	if s.Verified {
		s.mu.Lock()
		same := bytes.Equal(sec.Data[corev1.TLSCertKey], s.checkedCA)
		var err error
		if !same {
			err = s.uncheckedLocked(RootCASecret)
		}
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return s.load(sec)
}

// TenantCAOwnerAnnotation on a tenant CA Secret is the UID of the Tenant it
// was created for: the CA of a deleted Tenant is never handed to a Tenant
// created again with the same slug. The manager records the same on the
// Tenant, so that a Tenant restored from a backup (a new object, a new UID)
// is recognised as the CA's owner.
const TenantCAOwnerAnnotation = "integrations.serviceradar.io/tenant-uid"

// ErrTenantCAMissing means a tenant has no CA (yet): only the Tenant's own
// reconciliation creates one.
var ErrTenantCAMissing = errors.New("the tenant's certificate authority does not exist")

// TenantCASecretName is the Secret of a tenant's CA in the operator namespace.
func TenantCASecretName(slug string) string { return TenantCASecretPrefix + slug }

// OwnTenantCA returns the intermediate CA of the Tenant with the given slug,
// UID and creation time, issuing it under the root CA when missing. A CA
// Secret created for another UID (a deleted Tenant whose CA was not revoked)
// is replaced by a new CA, so that certificates of the old Tenant never count
// for the new one. One without owner (from a manager before owners were
// recorded) is adopted only when it is not older than the Tenant: an older
// one was left behind by a Tenant deleted under that manager (which had no
// finalizer to revoke it), and adopting it would keep that Tenant's edge
// certificates trusted, so it is replaced too.
//
// restoredFrom is the UID the Tenant itself records as its CA's owner
// (TenantCAOwnerAnnotation on the Tenant, kept by backups): after a restore
// the Tenant is a new object with a new UID, and a CA Secret recorded for
// restoredFrom (and issued by the current root) is its own, adopted so that
// the edge certificates issued before keep working.
func (s *Store) OwnTenantCA(ctx context.Context, slug string, owner types.UID, created time.Time, restoredFrom types.UID) (*ca.Authority, error) {
	if _, err := identity.TenantCACommonName(slug); err != nil {
		return nil, err
	}
	root, err := s.RootCA(ctx)
	if err != nil {
		return nil, err
	}
	name := TenantCASecretName(slug)
	sec, err := s.get(ctx, name)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, name, err)
	case sec.Annotations[TenantCAOwnerAnnotation] == string(owner) && s.issuedBy(sec, root):
		if err := s.markForBackup(ctx, sec); err != nil {
			return nil, err
		}
		return s.load(sec)
	case restoredFrom != "" && restoredFrom != owner && sec.Annotations[TenantCAOwnerAnnotation] == string(restoredFrom) && s.issuedBy(sec, root):
		patch := client.MergeFromWithOptions(sec.DeepCopy(), client.MergeFromWithOptimisticLock{})
		metav1.SetMetaDataAnnotation(&sec.ObjectMeta, TenantCAOwnerAnnotation, string(owner))
		metav1.SetMetaDataLabel(&sec.ObjectMeta, BackupLabel, "true")
		if err := s.Client.Patch(ctx, sec, patch); err != nil {
			return nil, fmt.Errorf("adopting Secret %s/%s for the restored tenant %s: %w", s.Namespace, name, owner, err)
		}
		return s.load(sec)
	case sec.Annotations[TenantCAOwnerAnnotation] == string(owner):
		// Issued by a root the platform was re-keyed away from: nothing it
		// signed chains any more, so it is replaced.
		if err := s.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("replacing the CA of tenant %q issued by a former root (Secret %s/%s): %w", slug, s.Namespace, name, err)
		}
	case sec.Annotations[TenantCAOwnerAnnotation] == "" && !sec.CreationTimestamp.Time.Before(created):
		patch := client.MergeFromWithOptions(sec.DeepCopy(), client.MergeFromWithOptimisticLock{})
		metav1.SetMetaDataAnnotation(&sec.ObjectMeta, TenantCAOwnerAnnotation, string(owner))
		if err := s.Client.Patch(ctx, sec, patch); err != nil {
			return nil, fmt.Errorf("adopting Secret %s/%s for tenant %s: %w", s.Namespace, name, owner, err)
		}
		return s.load(sec)
	default:
		// Another owner, or none and older than the Tenant: a former tenant's.
		// (An adopted CA of a former root is replaced on the next pass.)
		if err := s.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("revoking the CA of a former tenant %q in Secret %s/%s: %w", slug, s.Namespace, name, err)
		}
	}
	tca, err := root.NewTenantCA(slug, 0)
	if err != nil {
		return nil, err
	}
	data, err := caData(tca)
	if err != nil {
		return nil, err
	}
	sec = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace,
			Labels:      map[string]string{ManagedByLabel: ManagedBy, ComponentLabel: "tenant-ca", BackupLabel: "true"},
			Annotations: map[string]string{TenantCAOwnerAnnotation: string(owner)}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if err := s.Client.Create(ctx, sec); err != nil {
		// Another replica's create won the race (or a stale one must be
		// replaced): the next reconciliation looks again.
		return nil, fmt.Errorf("creating Secret %s/%s: %w", s.Namespace, name, err)
	}
	return tca, nil
}

// markForBackup adds BackupLabel to a Secret made before it existed (once).
func (s *Store) markForBackup(ctx context.Context, sec *corev1.Secret) error {
	if sec.Labels[BackupLabel] == "true" {
		return nil
	}
	patch := client.MergeFrom(sec.DeepCopy())
	metav1.SetMetaDataLabel(&sec.ObjectMeta, BackupLabel, "true")
	if err := s.Client.Patch(ctx, sec, patch); err != nil {
		return fmt.Errorf("labeling Secret %s/%s for backup: %w", sec.Namespace, sec.Name, err)
	}
	return nil
}

// issuedBy reports whether the CA certificate in sec is signed by root.
func (s *Store) issuedBy(sec *corev1.Secret, root *ca.Authority) bool {
	a, err := s.load(sec)
	return err == nil && a.Cert.CheckSignatureFrom(root.Cert) == nil
}

// TenantCA returns the intermediate CA of a tenant, or ErrTenantCAMissing
// when the Tenant's reconciliation has not created it.
func (s *Store) TenantCA(ctx context.Context, slug string) (*ca.Authority, error) {
	sec, err := s.get(ctx, TenantCASecretName(slug))
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("tenant %q: %w", slug, ErrTenantCAMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, TenantCASecretName(slug), err)
	}
	return s.load(sec)
}

// RevokeTenantCA deletes the CA of a Tenant that is being deleted, when it
// was created for (or adopted by) that Tenant: a Tenant created again with
// its slug then gets a new CA, and the gateway refuses the old certificates.
// A CA of another Tenant with the slug is left alone.
func (s *Store) RevokeTenantCA(ctx context.Context, slug string, owner types.UID) error {
	name := TenantCASecretName(slug)
	sec, err := s.get(ctx, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, name, err)
	}
	if got := sec.Annotations[TenantCAOwnerAnnotation]; got != "" && got != string(owner) {
		return nil
	}
	if err := s.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("revoking the CA of tenant %q (Secret %s/%s): %w", slug, s.Namespace, name, err)
	}
	return nil
}
