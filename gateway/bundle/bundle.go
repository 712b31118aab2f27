// Package bundle builds the configuration the gateway serves to a sync worker
// (DESIGN.md section 6): the sources of the worker's own tenant that are
// assigned to its SyncService, with their credentials, as the types of
// wire/bundle (whose canonical JSON hash is the config_version). It is pure:
// callers pass the objects they read, so selection is tested alone.
package bundle

import (
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	wire "github.com/serviceradar/sync-operator/wire/bundle"
)

// Inputs are the objects a sync bundle is built from.
type Inputs struct {
	// TenantSlug and TenantID are the caller's tenant, from its certificate.
	TenantSlug, TenantID string
	// ComponentID is the caller's component id, from its certificate.
	ComponentID string
	// Partition is the caller's partition, from its certificate.
	Partition string
	// Edge is true for a caller identified by its CN (an edge certificate),
	// false for one identified by its SPIFFE ID.
	Edge bool
	// NamespaceTenant maps namespace names to the tenant slug of their label.
	NamespaceTenant map[string]string
	// SyncServices are all SyncServices.
	SyncServices []v1alpha1.SyncService
	// Sources are all IntegrationSources.
	Sources []v1alpha1.IntegrationSource
	// Secret returns a Secret of a namespace, or nil when missing.
	Secret func(namespace, name string) *corev1.Secret
}

// tenantOf is the tenant of namespace ns as the inputs have it (the
// caller's tenant or the platform's; none for other namespaces).
func (in Inputs) tenantOf(ns, platformSlug string) v1alpha1.NamespaceTenant {
	return v1alpha1.SlugTenant(in.NamespaceTenant[ns], platformSlug)
}

// ErrAmbiguous is returned when an identity matches more than one
// SyncService: the gateway refuses it rather than pick one.
var ErrAmbiguous = errors.New("the identity matches more than one SyncService")

// SyncServiceFor finds the SyncService whose worker for the tenant has the
// caller's identity: its component id, in its partition, of its class (an
// edge certificate only an OnPrem SyncService, an SVID only an in-cluster
// one), among those that may serve the tenant (v1alpha1.MayServeTenant,
// the rule the manager follows too). That is how a certificate
// maps to a SyncService: nil when none matches, ErrAmbiguous when several
// do (never one of them by chance).
func SyncServiceFor(in Inputs, platformSlug string) (*v1alpha1.SyncService, error) {
	var found *v1alpha1.SyncService
	for i := range in.SyncServices {
		ss := &in.SyncServices[i]
		if !ss.DeletionTimestamp.IsZero() || (ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem) != in.Edge ||
			ss.Spec.Partition != in.Partition || v1alpha1.ComponentID(ss, in.TenantSlug) != in.ComponentID ||
			v1alpha1.MayServeTenant(ss, in.tenantOf(ss.Namespace, platformSlug), in.TenantSlug) != nil {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("component %q of tenant %q: %w", in.ComponentID, in.TenantSlug, ErrAmbiguous)
		}
		found = ss
	}
	return found, nil
}

// BuildSync builds the bundle of the worker of ss for the caller's tenant:
// only sources in the tenant's own namespaces that ss may serve
// (v1alpha1.MayServe: they reference ss, and its capabilities include
// their type), whose credentials resolve. A source of another tenant is
// never included, whatever it references.
func BuildSync(in Inputs, ss *v1alpha1.SyncService, platformSlug string) wire.Sync {
	out := wire.Sync{AgentID: in.ComponentID, Scope: wire.ScopeTenant, TenantID: in.TenantID, TenantSlug: in.TenantSlug, Sources: map[string]wire.Source{}}
	for i := range in.Sources {
		src := &in.Sources[i]
		if !src.DeletionTimestamp.IsZero() || in.NamespaceTenant[src.Namespace] != in.TenantSlug {
			continue
		}
		if v1alpha1.MayServe(ss, src, in.tenantOf(ss.Namespace, platformSlug), in.tenantOf(src.Namespace, platformSlug)) != nil {
			continue
		}
		s, ok := sourceOf(src, ss, in.Secret)
		if !ok {
			continue
		}
		s.AgentID = in.ComponentID
		out.Sources[src.Namespace+"/"+src.Name] = s
	}
	return out
}

func seconds(d *metav1.Duration) int64 {
	if d == nil {
		return 0
	}
	return int64(d.Seconds())
}

func modes(ms []v1alpha1.SweepMode) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, string(m))
	}
	sort.Strings(out)
	return out
}

// sourceOf converts a source; false when its credentials do not resolve.
func sourceOf(src *v1alpha1.IntegrationSource, ss *v1alpha1.SyncService, secret func(string, string) *corev1.Secret) (wire.Source, bool) {
	s := wire.Source{
		Type: string(src.Spec.Type), Endpoint: src.Spec.Endpoint, Partition: src.Spec.Partition,
		PollIntervalSec: seconds(src.Spec.PollInterval), DiscoveryIntervalSec: seconds(src.Spec.DiscoveryInterval),
		PageSize: src.Spec.EffectivePageSize(), Paused: src.Spec.Paused || ss.Spec.Paused, DryRun: src.Spec.DryRun,
		IntegrationSourceUID: string(src.UID), SyncServiceID: string(ss.UID),
	}
	if key, ok := v1alpha1.CredentialKey(src.Spec.Type); ok {
		if src.Spec.CredentialsSecretRef == nil {
			return wire.Source{}, false
		}
		sec := secret(src.Namespace, src.Spec.CredentialsSecretRef.Name)
		if sec == nil || len(sec.Data[key]) == 0 {
			return wire.Source{}, false
		}
		// Only the key the integration needs travels, never the rest of the Secret.
		s.Credentials = map[string]string{key: string(sec.Data[key])}
	}
	for _, q := range src.Spec.Queries {
		s.Queries = append(s.Queries, wire.Query{Label: q.Label, Query: q.Query, SweepModes: modes(q.SweepModes)})
	}
	if len(src.Spec.NetworkBlacklist) > 0 {
		s.NetworkBlacklist = append([]string(nil), src.Spec.NetworkBlacklist...)
		sort.Strings(s.NetworkBlacklist)
	}
	if f := src.Spec.Faker; f != nil {
		s.Faker = &wire.Faker{Devices: f.Devices, ChurnPercent: f.ChurnPercent, Seed: f.Seed}
		if o := f.Overlap; o != nil {
			s.Faker.OverlapSeed, s.Faker.OverlapPercent = o.Seed, o.Percent
		}
	}
	if src.Spec.Type == v1alpha1.IntegrationArmis {
		s.StaleAfterSec = int64(src.Spec.ArmisStaleAfter().Seconds())
	}
	if nb := src.Spec.NetBox; nb != nil && src.Spec.Type == v1alpha1.IntegrationNetBox {
		s.NetBox = &wire.NetBox{ExcludeVirtualMachines: nb.ExcludeVirtualMachines}
		for status, a := range nb.StatusAvailability {
			if s.NetBox.StatusAvailability == nil {
				s.NetBox.StatusAvailability = map[string]string{}
			}
			s.NetBox.StatusAvailability[status] = string(a)
		}
	}
	s.Sweep = SweepOf(src.Spec.Sweep)
	s.PollInterval = (time.Duration(s.PollIntervalSec) * time.Second).String()
	s.DiscoveryInterval = (time.Duration(s.DiscoveryIntervalSec) * time.Second).String()
	if s.Sweep != nil && s.Sweep.Enabled && s.Sweep.IntervalSec > 0 {
		s.SweepInterval = (time.Duration(s.Sweep.IntervalSec) * time.Second).String()
	}
	return s, true
}

// SweepOf converts a source's sweep settings; nil stays nil.
func SweepOf(sw *v1alpha1.SweepSpec) *wire.Sweep {
	if sw == nil {
		return nil
	}
	return &wire.Sweep{Enabled: sw.Enabled, Modes: modes(sw.Modes), Ports: append([]int32(nil), sw.Ports...),
		Networks: append([]string(nil), sw.Networks...), IntervalSec: seconds(sw.Interval)}
}
