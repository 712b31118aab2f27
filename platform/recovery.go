package platform

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
)

// RekeyAnnotation on the platform Tenant allows the bootstrap, once, to mint
// a new platform UUID or root CA although the cluster shows it had one. It
// is the documented way to start over after the identity Secrets are lost
// for good: every tenant's ID changes (the device store keys tenants by
// slug, so devices stay), every tenant CA is reissued, and edge certificates
// issued before stop working. The bootstrap removes the annotation when done.
const RekeyAnnotation = "integrations.serviceradar.io/rekey-platform-identity"

var (
	// ErrIdentityMissing means the platform identity Secret does not exist.
	ErrIdentityMissing = errors.New("the platform identity Secret does not exist")
	// ErrRootCAMissing means the platform root CA Secret does not exist.
	ErrRootCAMissing = errors.New("the platform root CA Secret does not exist")
	// ErrIdentityUnchecked means the bootstrap has not (yet) checked the
	// platform identity Secret as it is now against the cluster.
	ErrIdentityUnchecked = errors.New("the platform identity has not been checked by the manager's bootstrap")
	// ErrIdentityLost means the cluster shows an earlier platform identity
	// (or root CA) that cannot be recovered, and the bootstrap refuses to mint
	// a new one until RekeyAnnotation allows it.
	ErrIdentityLost = errors.New("the platform identity was lost")
)

// Outcome says what the bootstrap did about one part of the identity.
type Outcome string

// Outcomes of EnsurePlatformTenantID and EnsureRootCA.
const (
	// Existing: the Secret was there and agrees with the cluster.
	Existing Outcome = "Existing"
	// Created: a fresh platform, nothing to keep.
	Created Outcome = "Created"
	// Recovered: the Secret was rewritten from what the cluster recorded.
	Recovered Outcome = "Recovered"
	// Rekeyed: minted anew over evidence of an earlier one, as RekeyAnnotation allowed.
	Rekeyed Outcome = "Rekeyed"
)

// Evidence is what the cluster shows of an earlier platform identity, read
// by the bootstrap from the Tenants' status and the tenant CA Secrets.
type Evidence struct {
	// PlatformTenantID is the tenant ID recorded on the platform Tenant's
	// status ("" when none): the platform UUID itself.
	PlatformTenantID string
	// TenantIDs maps the slug of every other Tenant with a recorded tenant
	// ID to that ID (UUIDv5 of the platform UUID and the slug).
	TenantIDs map[string]string
	// TenantCAs maps the name of each tenant CA Secret of the operator
	// namespace to its certificate (PEM), issued by the platform root CA.
	TenantCAs map[string][]byte
}

// Empty reports whether the cluster shows no earlier identity at all.
func (e Evidence) Empty() bool {
	return e.PlatformTenantID == "" && len(e.TenantIDs) == 0 && len(e.TenantCAs) == 0
}

// conflicts lists the recorded IDs that platform UUID id would change.
func (e Evidence) conflicts(id uuid.UUID) []string {
	var out []string
	if e.PlatformTenantID != "" && e.PlatformTenantID != id.String() {
		out = append(out, fmt.Sprintf("the platform Tenant records %s", e.PlatformTenantID))
	}
	for slug, rec := range e.TenantIDs {
		if want := TenantID(id, slug).String(); rec != want {
			out = append(out, fmt.Sprintf("tenant %q records %s", slug, rec))
		}
	}
	sort.Strings(out)
	return out
}

// lost is an ErrIdentityLost with what was lost and why nothing is minted.
func lost(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrIdentityLost, fmt.Sprintf(format, args...))
}

// EnsurePlatformTenantID makes the platform identity Secret exist without
// ever changing a tenant's ID silently:
//   - a Secret that agrees with every recorded tenant ID is kept;
//   - a Secret that disagrees is refused (a restore mixed two platforms);
//   - a missing Secret is recovered from the platform Tenant's recorded ID
//     when every other recorded tenant ID agrees with it;
//   - otherwise, if the cluster shows an earlier identity, it is refused;
//   - with nothing to keep, a random UUID is minted.
//
// rekey (RekeyAnnotation) accepts the Secret as it is, or mints a new UUID,
// over any evidence. Refusals wrap ErrIdentityLost.
func (s *Store) EnsurePlatformTenantID(ctx context.Context, ev Evidence, rekey bool) (uuid.UUID, Outcome, error) {
	sec, err := s.get(ctx, IdentitySecret)
	switch {
	case err == nil:
		id, err := s.parseID(sec)
		if err != nil {
			return uuid.Nil, "", err
		}
		if c := ev.conflicts(id); len(c) > 0 && !rekey {
			return uuid.Nil, "", s.refuse(IdentitySecret, lost("Secret %s/%s holds platform UUID %s, which would change recorded tenant IDs (%s); "+
				"restore the identity Secret these tenants were created with, or annotate the platform Tenant %s=true to re-key",
				s.Namespace, IdentitySecret, id, strings.Join(c, "; "), RekeyAnnotation))
		}
		if err := s.markForBackup(ctx, sec); err != nil {
			return uuid.Nil, "", err
		}
		s.checked(IdentitySecret, id, nil, nil)
		return id, Existing, nil
	case !apierrors.IsNotFound(err):
		return uuid.Nil, "", fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, IdentitySecret, err)
	}
	outcome := Created
	var id uuid.UUID
	if rec, perr := uuid.Parse(ev.PlatformTenantID); perr == nil && rec != uuid.Nil && len(ev.conflicts(rec)) == 0 {
		id, outcome = rec, Recovered
	} else {
		if !ev.Empty() && !rekey {
			why := "the platform Tenant records no tenant ID to recover it from"
			if perr == nil && rec != uuid.Nil {
				why = fmt.Sprintf("the platform Tenant records %s, but other tenants' recorded IDs do not derive from it (%s)", rec, strings.Join(ev.conflicts(rec), "; "))
			}
			return uuid.Nil, "", s.refuse(IdentitySecret, lost("Secret %s/%s is missing and %s, while %s; minting a new platform UUID would change every tenant's ID. "+
				"Restore the Secret from a backup, or annotate the platform Tenant %s=true to re-key", s.Namespace, IdentitySecret, why, ev.describe(), RekeyAnnotation))
		}
		if id, err = uuid.NewRandom(); err != nil {
			return uuid.Nil, "", fmt.Errorf("generating platform tenant UUID: %w", err)
		}
		if !ev.Empty() {
			outcome = Rekeyed
		}
	}
	sec, err = s.getOrCreate(ctx, IdentitySecret, "platform-identity", func() (map[string][]byte, error) {
		return map[string][]byte{TenantIDKey: []byte(id.String())}, nil
	})
	if err != nil {
		return uuid.Nil, "", err
	}
	// Another replica may have won the create: what is stored counts.
	if id, err = s.parseID(sec); err != nil {
		return uuid.Nil, "", err
	}
	s.checked(IdentitySecret, id, nil, nil)
	return id, outcome, nil
}

// EnsureRootCA makes the platform root CA Secret exist. A root CA's key
// cannot be recovered: when the Secret is missing while tenant CAs issued by
// it exist, a new root would leave every tenant CA and edge certificate
// unchained, so it is refused (ErrIdentityLost) unless rekey allows it; the
// tenant CAs are then reissued under the new root by the Tenant controller.
func (s *Store) EnsureRootCA(ctx context.Context, ev Evidence, rekey bool) (*ca.Authority, Outcome, error) {
	sec, err := s.get(ctx, RootCASecret)
	switch {
	case err == nil:
		a, err := s.load(sec)
		if err != nil {
			return nil, "", err
		}
		if foreign := ev.notIssuedBy(a); len(foreign) > 0 && !rekey {
			return nil, "", s.refuse(RootCASecret, lost("Secret %s/%s holds a root CA that did not issue the tenant CAs %s; using it would reissue them and cut off every edge certificate. "+
				"Restore the root CA Secret they were issued by, or annotate the platform Tenant %s=true to re-key", s.Namespace, RootCASecret, strings.Join(foreign, ", "), RekeyAnnotation))
		}
		if err := s.markForBackup(ctx, sec); err != nil {
			return nil, "", err
		}
		s.checked(RootCASecret, uuid.Nil, sec.Data[corev1.TLSCertKey], a)
		return a, Existing, nil
	case !apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, RootCASecret, err)
	}
	outcome := Created
	if len(ev.TenantCAs) > 0 {
		if !rekey {
			return nil, "", s.refuse(RootCASecret, lost("Secret %s/%s is missing while tenant CAs issued by it exist (%s); a new root would leave them and every edge certificate they issued unchained. "+
				"Restore the Secret from a backup, or annotate the platform Tenant %s=true to re-key (tenant CAs are reissued, edge sites need new certificates)",
				s.Namespace, RootCASecret, strings.Join(ev.tenantCANames(), ", "), RekeyAnnotation))
		}
		outcome = Rekeyed
	}
	sec, err = s.getOrCreate(ctx, RootCASecret, "root-ca", func() (map[string][]byte, error) {
		root, err := ca.NewRoot("serviceradar-platform-root", 0, s.Now)
		if err != nil {
			return nil, err
		}
		return caData(root)
	})
	if err != nil {
		return nil, "", err
	}
	a, err := s.load(sec)
	if err != nil {
		return nil, "", err
	}
	s.checked(RootCASecret, uuid.Nil, sec.Data[corev1.TLSCertKey], a)
	return a, outcome, nil
}

// notIssuedBy names the tenant CAs that root did not sign.
func (e Evidence) notIssuedBy(root *ca.Authority) []string {
	var out []string
	for _, name := range e.tenantCANames() {
		b, _ := pem.Decode(e.TenantCAs[name])
		if b == nil {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || c.CheckSignatureFrom(root.Cert) != nil {
			out = append(out, name)
		}
	}
	return out
}

func (e Evidence) tenantCANames() []string {
	names := make([]string, 0, len(e.TenantCAs))
	for n := range e.TenantCAs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ListTenantCAs returns the tenant CA Secrets of the operator namespace:
// name -> certificate (PEM).
func (s *Store) ListTenantCAs(ctx context.Context) (map[string][]byte, error) {
	var list corev1.SecretList
	if err := s.Reader.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabels{ComponentLabel: "tenant-ca", ManagedByLabel: ManagedBy}); err != nil {
		return nil, fmt.Errorf("listing tenant CA Secrets in %s: %w", s.Namespace, err)
	}
	out := map[string][]byte{}
	for _, sec := range list.Items {
		if strings.HasPrefix(sec.Name, TenantCASecretPrefix) {
			out[sec.Name] = sec.Data[corev1.TLSCertKey]
		}
	}
	return out, nil
}

// Unchanged reports whether both identity Secrets are still what the
// bootstrap checked (two reads); when not, the bootstrap checks again.
func (s *Store) Unchanged(ctx context.Context) (bool, error) {
	idSec, err := s.get(ctx, IdentitySecret)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, IdentitySecret, err)
	}
	caSec, err := s.get(ctx, RootCASecret)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, RootCASecret, err)
	}
	id, err := uuid.ParseBytes(idSec.Data[TenantIDKey])
	s.mu.Lock()
	defer s.mu.Unlock()
	return err == nil && id == s.checkedID && bytes.Equal(caSec.Data[corev1.TLSCertKey], s.checkedCA), nil
}

// checked records what the bootstrap validated for Secret name and clears
// its refusal.
func (s *Store) checked(name string, id uuid.UUID, caCert []byte, root *ca.Authority) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refusals, name)
	if name == IdentitySecret {
		s.checkedID = id
	} else {
		s.checkedCA, s.checkedFP, s.checkedRoot = bytes.Clone(caCert), "", root
		if b, _ := pem.Decode(caCert); b != nil {
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				s.checkedFP = identity.KeyFingerprint(c)
			}
		}
	}
}

// uncheckedLocked is the error for a Secret that differs from what the
// bootstrap checked; s.mu is held.
func (s *Store) uncheckedLocked(name string) error {
	if r := s.refusals[name]; r != nil {
		return fmt.Errorf("%w: %w", ErrIdentityUnchecked, r)
	}
	return fmt.Errorf("%w: Secret %s/%s is new or changed; it is checked within moments", ErrIdentityUnchecked, s.Namespace, name)
}

// describe summarises the evidence for a refusal message.
func (e Evidence) describe() string {
	var parts []string
	if len(e.TenantIDs) > 0 {
		slugs := make([]string, 0, len(e.TenantIDs))
		for slug := range e.TenantIDs {
			slugs = append(slugs, slug)
		}
		sort.Strings(slugs)
		if len(slugs) > 5 {
			slugs = append(slugs[:5], fmt.Sprintf("and %d more", len(e.TenantIDs)-5))
		}
		parts = append(parts, fmt.Sprintf("tenants %s have recorded IDs", strings.Join(slugs, ", ")))
	}
	if len(e.TenantCAs) > 0 {
		parts = append(parts, fmt.Sprintf("%d tenant CA Secret(s) exist", len(e.TenantCAs)))
	}
	if e.PlatformTenantID != "" {
		parts = append(parts, "the platform Tenant records "+e.PlatformTenantID)
	}
	return strings.Join(parts, " and ")
}

// refuse records why the bootstrap refused to mint the Secret name, so that
// readers of a missing Secret report the reason, and returns err.
func (s *Store) refuse(name string, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]error{}
	}
	s.refusals[name] = err
	// What was checked before no longer holds.
	if name == IdentitySecret {
		s.checkedID = uuid.Nil
	} else {
		s.checkedCA, s.checkedFP, s.checkedRoot = nil, "", nil
	}
	return err
}

// missing is the error for a missing Secret name: base, with the
// bootstrap's refusal when it refused to mint it.
func (s *Store) missing(base error, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refusals[name]; r != nil {
		return fmt.Errorf("%w (%w)", base, r)
	}
	return fmt.Errorf("%w (Secret %s/%s; the manager's bootstrap creates it)", base, s.Namespace, name)
}

// RootFingerprint is the identity.KeyFingerprint of the platform root CA:
// from memory once the bootstrap checked it (Verified), else read.
// Certificates record it as their issuer, so that a re-keyed root makes
// the manager issue them again.
func (s *Store) RootFingerprint(ctx context.Context) (string, error) {
	if s.Verified {
		s.mu.Lock()
		fp := s.checkedFP
		s.mu.Unlock()
		if fp != "" {
			return fp, nil
		}
	}
	root, err := s.RootCA(ctx)
	if err != nil {
		return "", err
	}
	return identity.KeyFingerprint(root.Cert), nil
}
