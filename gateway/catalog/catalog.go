// Package catalog keeps, in memory, the configuration the gateway serves to
// each enrolled sync worker: its SyncService, its tenant and its encoded
// bundle. An entry is built once from the informer cache and the Secrets its
// sources reference, and is built again only after an informer event touched
// something it is built from, so the hot path of Hello and GetConfig is a
// map lookup. Events are scoped to a tenant wherever the object tells which
// one, so an edit in one tenant neither rebuilds nor wakes the others.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/sweep"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/tenancy"
	wire "github.com/serviceradar/sync-operator/wire/bundle"
)

// ErrNotEnrolled is returned for a caller that is not an enrolled sync worker.
var ErrNotEnrolled = errors.New("component not enrolled")

// ErrTenantNotOnboarded is returned when the caller's tenant does not exist,
// has no tenant id yet, is being deleted, shares its slug with another
// Tenant, or is not what the certificate class claims.
var ErrTenantNotOnboarded = errors.New("tenant is not onboarded")

// ErrRevoked is returned for an edge certificate issued before its
// SyncService's edge identity was issued afresh (status.edgeIdentitySince:
// its onboarding Secret was deleted). It is an ErrNotEnrolled.
var ErrRevoked = fmt.Errorf("%w: the certificate was issued before its SyncService's edge identity was issued again (status.edgeIdentitySince)", ErrNotEnrolled)

// ErrUntrustedIssuer is returned for an edge certificate that the tenant's
// current certificate authority did not sign: one of a deleted tenant's CA,
// after a Tenant with the same slug was created again. It is an
// ErrNotEnrolled.
var ErrUntrustedIssuer = fmt.Errorf("%w: the certificate was not issued by the tenant's current certificate authority", ErrNotEnrolled)

// buildTimeout bounds one build, whoever waits for it.
const buildTimeout = 10 * time.Second

// Entry is what the gateway serves one sync worker. It is shared between
// callers and must not be modified.
type Entry struct {
	// TenantID is the caller's tenant id from its Tenant's status.
	TenantID string
	// SyncService is the SyncService the caller is enrolled as.
	SyncService *v1alpha1.SyncService
	// Bundle is the caller's sync bundle; Raw its canonical JSON and Version its hash.
	Bundle  wire.Sync
	Raw     []byte
	Version string

	global, tenant uint64
	// secrets are the Secrets its sources reference, present or not.
	secrets []types.NamespacedName
}

// tenantState is a tenant's generation and the channel closed when it moves.
type tenantState struct {
	gen  uint64
	wake chan struct{}
}

// secretRef is a Secret that entries, built or being built, reference.
type secretRef struct {
	// slug is the tenant whose sources reference it: its changes invalidate that tenant.
	slug string
	// users counts the entries and builds in flight that reference it; at
	// zero the ref is dropped and its watch stopped, the data with it.
	users int
	// watch keeps the Secret (and only it) current while it is referenced.
	watch *secretWatch
}

// Catalog is safe for concurrent use.
type Catalog struct {
	reader       client.Reader
	secrets      corev1client.SecretsGetter
	platformSlug string
	builds       singleflight.Group

	mu      sync.Mutex
	global  uint64
	tenants map[string]*tenantState
	entries map[identity.Identity]*Entry
	// refs are the Secrets that the sources of current entries reference
	// (present or not), and only those: a Secret no source references any
	// more is forgotten, its data with it.
	refs map[types.NamespacedName]*secretRef
	// watchCtx bounds the Secret watches: the context Watch was given.
	watchCtx context.Context
}

// New returns a catalog that reads CRs and namespaces from reader (an
// informer cache) and watches, through secrets, each Secret that sources
// reference, one at a time by name and only while they reference it (see
// secretWatch): the gateway never lists or watches Secrets at large.
func New(reader client.Reader, secrets corev1client.SecretsGetter, platformSlug string) *Catalog {
	return &Catalog{
		reader: reader, secrets: secrets, platformSlug: platformSlug,
		tenants: map[string]*tenantState{}, entries: map[identity.Identity]*Entry{},
		refs: map[types.NamespacedName]*secretRef{}, watchCtx: context.Background(),
	}
}

func (c *Catalog) tenantLocked(slug string) *tenantState {
	t := c.tenants[slug]
	if t == nil {
		t = &tenantState{wake: make(chan struct{})}
		c.tenants[slug] = t
	}
	return t
}

// Changed returns a channel that is closed when the configuration of the
// tenant may have changed. Take it before reading an entry so that no change
// falls between the two.
func (c *Catalog) Changed(slug string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tenantLocked(slug).wake
}

// Invalidate marks the tenant's entries stale and wakes its waiters.
func (c *Catalog) Invalidate(slug string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tenantLocked(slug)
	t.gen++
	close(t.wake)
	t.wake = make(chan struct{})
}

// InvalidateAll marks every entry stale and wakes every waiter: for changes
// that may concern any tenant (the platform's SyncServices serve them all).
func (c *Catalog) InvalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.global++
	for _, t := range c.tenants {
		t.gen++
		close(t.wake)
		t.wake = make(chan struct{})
	}
}

// Sync returns the entry of a sync caller, building it when it is missing or
// stale. A caller that is not enrolled gets ErrTenantNotOnboarded or
// ErrNotEnrolled; other errors mean the cluster could not be read.
func (c *Catalog) Sync(ctx context.Context, id identity.Identity) (*Entry, error) {
	c.mu.Lock()
	e := c.entries[id]
	global, tenant := c.global, c.tenantLocked(id.TenantSlug).gen
	c.mu.Unlock()
	if e != nil && e.global == global && e.tenant == tenant {
		return e, nil
	}
	// Callers that differ only in the CA that signed them build apart.
	v, err, _ := c.builds.Do(id.String()+"\x00"+id.Issuer, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), buildTimeout)
		defer cancel()
		return c.build(bctx, id)
	})
	if err != nil {
		return nil, fmt.Errorf("configuration of %s: %w", id, err)
	}
	return v.(*Entry), nil //nolint:forcetypeassert // build returns *Entry
}

// build reads the caller's objects and encodes its bundle. The generations
// are taken first: an event during the build leaves the entry stale.
func (c *Catalog) build(ctx context.Context, id identity.Identity) (*Entry, error) {
	c.mu.Lock()
	global, tenant := c.global, c.tenantLocked(id.TenantSlug).gen
	c.mu.Unlock()
	drop := func(err error) (*Entry, error) {
		c.mu.Lock()
		if old := c.entries[id]; old != nil {
			delete(c.entries, id)
			c.releaseLocked(old.secrets)
		}
		c.mu.Unlock()
		return nil, err
	}

	t, err := c.tenant(ctx, id.TenantSlug)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Status.TenantID == "" || t.Spec.Platform != (id.TenantSlug == c.platformSlug) {
		return drop(fmt.Errorf("%w: %q", ErrTenantNotOnboarded, id.TenantSlug))
	}
	// An edge certificate counts only when the tenant's current CA signed
	// it: a deleted tenant's CA is not trusted by a Tenant created again.
	// An upstream-format one was verified against the configured upstream
	// CAs instead (mtls.Verifier.UpstreamCAs).
	if !id.IsSPIFFE() && !id.Upstream && (t.Status.CAFingerprint == "" || id.Issuer != t.Status.CAFingerprint) {
		return drop(ErrUntrustedIssuer)
	}
	in, err := c.inputs(ctx, id, t.Status.TenantID)
	if err != nil {
		return nil, err
	}
	// An edge certificate may only act as an OnPrem worker, an SVID only as an
	// in-cluster one, each in its own partition; an identity that matches
	// two SyncServices acts as neither.
	ss, err := bundle.SyncServiceFor(in, c.platformSlug)
	if errors.Is(err, bundle.ErrAmbiguous) {
		return drop(fmt.Errorf("%w: %w", ErrNotEnrolled, err))
	}
	if ss == nil {
		return drop(ErrNotEnrolled)
	}
	// An edge certificate issued before its SyncService's identity was
	// issued afresh (its onboarding Secret deleted) is revoked.
	if !id.IsSPIFFE() && !id.Upstream && ss.Status.EdgeIdentitySince != nil && id.IssuedAt < ss.Status.EdgeIdentitySince.Unix() {
		return drop(ErrRevoked)
	}
	var readErr error
	var refs []types.NamespacedName
	in.Secret = func(ns, name string) *corev1.Secret {
		key := types.NamespacedName{Namespace: ns, Name: name}
		if !slices.Contains(refs, key) {
			// Referenced before it is read, so that a change while this
			// build runs still invalidates the tenant.
			refs = append(refs, key)
			c.acquire(key, id.TenantSlug)
		}
		sec, err := c.secret(ctx, key)
		if err != nil {
			readErr = err
		}
		return sec
	}
	b := bundle.BuildSync(in, ss, c.platformSlug)
	if readErr != nil {
		// Serving the bundle without that source would tell the worker it was removed.
		c.release(refs)
		return nil, readErr
	}
	raw, version, err := wire.Encode(b)
	if err != nil {
		c.release(refs)
		return nil, err
	}
	e := &Entry{TenantID: t.Status.TenantID, SyncService: ss, Bundle: b, Raw: raw, Version: version, global: global, tenant: tenant, secrets: refs}
	c.mu.Lock()
	if old := c.entries[id]; old != nil {
		c.releaseLocked(old.secrets)
	}
	c.entries[id] = e
	c.mu.Unlock()
	return e, nil
}

// acquire notes one more user of a referenced Secret, and starts watching
// it when it is newly referenced.
func (c *Catalog) acquire(key types.NamespacedName, tenantSlug string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.refs[key]
	if r == nil {
		r = &secretRef{}
		c.refs[key] = r
		var w *secretWatch
		w = startSecretWatch(c.watchCtx, c.secrets, key, func() { c.secretChanged(key, w) })
		r.watch = w
	}
	r.slug = tenantSlug
	r.users++
}

// release undoes acquire.
func (c *Catalog) release(keys []types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(keys)
}

// releaseLocked undoes acquire, forgetting the Secrets nothing references.
func (c *Catalog) releaseLocked(keys []types.NamespacedName) {
	for _, key := range keys {
		if r := c.refs[key]; r != nil {
			if r.users--; r.users <= 0 {
				delete(c.refs, key)
				r.watch.stop()
			}
		}
	}
}

// forgetSyncService drops the entries served as a SyncService that is gone,
// with the Secrets only they reference; a worker that still calls is
// refused as not enrolled.
func (c *Catalog) forgetSyncService(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		if e.SyncService.UID == uid {
			delete(c.entries, id)
			c.releaseLocked(e.secrets)
		}
	}
}

// tenant finds the Tenant of a slug, or nil when it names none that may be
// served, by the rule the manager follows too (tenancy.Resolve): an invalid
// slug, none, one being deleted, or several non-platform Tenants claiming it.
func (c *Catalog) tenant(ctx context.Context, slug string) (*v1alpha1.Tenant, error) {
	var ts v1alpha1.TenantList
	if err := c.reader.List(ctx, &ts); err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	return tenancy.Resolve(ts.Items, slug), nil
}

// inputs reads what the caller's bundle is built from: the namespaces of its
// tenant and of the platform (where shared SyncServices live), their
// SyncServices, and the sources in its own tenant's namespaces only.
func (c *Catalog) inputs(ctx context.Context, id identity.Identity, tenantID string) (bundle.Inputs, error) {
	in := bundle.Inputs{TenantSlug: id.TenantSlug, TenantID: tenantID, ComponentID: id.ComponentID, Partition: id.Partition,
		Edge: !id.IsSPIFFE(), NamespaceTenant: map[string]string{}}
	for _, slug := range []string{id.TenantSlug, c.platformSlug} {
		var nss corev1.NamespaceList
		if err := c.reader.List(ctx, &nss, client.MatchingLabels{v1alpha1.TenantLabel: slug}); err != nil {
			return in, fmt.Errorf("listing namespaces of tenant %q: %w", slug, err)
		}
		for _, ns := range nss.Items {
			in.NamespaceTenant[ns.Name] = slug
		}
	}
	for ns, slug := range in.NamespaceTenant {
		var sss v1alpha1.SyncServiceList
		if err := c.reader.List(ctx, &sss, client.InNamespace(ns)); err != nil {
			return in, fmt.Errorf("listing sync services in %s: %w", ns, err)
		}
		in.SyncServices = append(in.SyncServices, sss.Items...)
		if slug != id.TenantSlug {
			continue
		}
		var srcs v1alpha1.IntegrationSourceList
		if err := c.reader.List(ctx, &srcs, client.InNamespace(ns)); err != nil {
			return in, fmt.Errorf("listing integration sources in %s: %w", ns, err)
		}
		in.Sources = append(in.Sources, srcs.Items...)
	}
	return in, nil
}

// secret returns a referenced (acquired) Secret from its watch, or nil when
// it does not exist or is not granted to the gateway.
func (c *Catalog) secret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	c.mu.Lock()
	r := c.refs[key]
	c.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("secret %s is read without being referenced", key)
	}
	return r.watch.get(ctx)
}

// Agent returns the tenant id of an agent caller and the sources of its
// tenant and partition that have sweep enabled. Agents are enrolled by
// their SVID's registration; only their tenant must be onboarded.
func (c *Catalog) Agent(ctx context.Context, id identity.Identity) (string, []sweep.Source, error) {
	t, err := c.tenant(ctx, id.TenantSlug)
	if err != nil {
		return "", nil, err
	}
	if t == nil || t.Status.TenantID == "" || t.Spec.Platform != (id.TenantSlug == c.platformSlug) {
		return "", nil, fmt.Errorf("%w: %q", ErrTenantNotOnboarded, id.TenantSlug)
	}
	var nss corev1.NamespaceList
	if err := c.reader.List(ctx, &nss, client.MatchingLabels{v1alpha1.TenantLabel: id.TenantSlug}); err != nil {
		return "", nil, fmt.Errorf("listing namespaces of tenant %q: %w", id.TenantSlug, err)
	}
	var out []sweep.Source
	for _, ns := range nss.Items {
		var srcs v1alpha1.IntegrationSourceList
		if err := c.reader.List(ctx, &srcs, client.InNamespace(ns.Name)); err != nil {
			return "", nil, fmt.Errorf("listing integration sources in %s: %w", ns.Name, err)
		}
		for i := range srcs.Items {
			src := &srcs.Items[i]
			sw := bundle.SweepOf(src.Spec.Sweep)
			if !src.DeletionTimestamp.IsZero() || src.Spec.Partition != id.Partition || sw == nil || !sw.Enabled {
				continue
			}
			out = append(out, sweep.Source{UID: string(src.UID), Type: string(src.Spec.Type), Sweep: *sw})
		}
	}
	slices.SortFunc(out, func(a, b sweep.Source) int { return strings.Compare(a.UID, b.UID) })
	return t.Status.TenantID, out, nil
}
