// Package identity turns verified peer certificates into identities and
// formats the identities that issuers put into certificates, so that the two
// sides cannot drift apart (DESIGN.md section 5).
//
// Two forms exist. In-cluster (platform class) components carry a SPIFFE ID
// spiffe://<trust domain>/<component type>/<tenant slug>/<partition>/<component id>.
// Tenant edges carry no SPIFFE ID; their subject CN is
// <component id>.<partition>.<tenant slug>.serviceradar. A CN naming the
// reserved platform slug is a platform identity even without SPIFFE.
package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultTrustDomain is the SPIFFE trust domain unless configured otherwise.
const DefaultTrustDomain = "serviceradar.local"

// DefaultPlatformSlug is the reserved slug of the platform tenant unless configured otherwise.
const DefaultPlatformSlug = "platform"

// cnSuffix ends every edge CN and tenant CA CN.
const cnSuffix = "serviceradar"

// MaxCommonNameLength is the longest subject CN (RFC 5280 ub-common-name):
// longer edge or tenant CA CNs are refused rather than issued.
const MaxCommonNameLength = 64

// Class says where a caller sits.
type Class string

const (
	// ClassPlatform is an in-cluster component (SPIFFE ID), or any identity of
	// the platform tenant.
	ClassPlatform Class = "platform"
	// ClassEdge is a tenant edge component identified by its CN.
	ClassEdge Class = "edge"
)

// ComponentType is the kind of component an identity belongs to.
type ComponentType string

const (
	// ComponentSync is a sync worker.
	ComponentSync ComponentType = "sync"
	// ComponentAgent is a ServiceRadar agent.
	ComponentAgent ComponentType = "agent"
	// ComponentGateway is an agent-gateway.
	ComponentGateway ComponentType = "gateway"
	// ComponentChecker is a checker.
	ComponentChecker ComponentType = "checker"
	// ComponentUnspecified is the type of an edge identity: its CN does not say,
	// so the gateway authorizes it by looking up its component id.
	ComponentUnspecified ComponentType = ""
)

// ComponentTypes are the component types a SPIFFE ID may carry.
var ComponentTypes = []ComponentType{ComponentSync, ComponentAgent, ComponentGateway, ComponentChecker}

// Rule errors: every classification failure wraps exactly one of them, so
// callers can tell which rule failed with errors.Is.
var (
	ErrNoCertificate      = errors.New("no peer certificate")
	ErrMultipleSPIFFEIDs  = errors.New("certificate carries more than one SPIFFE ID")
	ErrTrustDomain        = errors.New("SPIFFE ID is not in the expected trust domain")
	ErrSPIFFEPath         = errors.New("SPIFFE ID path must be /<component_type>/<tenant_slug>/<partition>/<component_id>")
	ErrComponentType      = errors.New("unknown component type")
	ErrCommonName         = errors.New("CN must be <component_id>.<partition>.<tenant_slug>.serviceradar")
	ErrLabel              = errors.New("identity label must be a DNS label")
	ErrTenantCACommonName = errors.New("tenant CA CN must be tenant-<slug>.ca.serviceradar")
	ErrCommonNameLength   = errors.New("CN is longer than 64 characters")
)

// Identity is what a certificate says about its holder.
type Identity struct {
	// Class is platform or edge.
	Class Class
	// ComponentType comes from the SPIFFE path; unspecified for CN identities.
	ComponentType ComponentType
	// TenantSlug is the tenant the identity is scoped to.
	TenantSlug string
	// Partition is the network partition of the component.
	Partition string
	// ComponentID names the component within its tenant and partition.
	ComponentID string
	// SPIFFEID is set for SPIFFE identities and zero otherwise.
	SPIFFEID spiffeid.ID
	// Upstream is true for an identity in ServiceRadar's own format (no
	// tenant label), mapped to the tenant of Classifier.Upstream. Its chain
	// was verified against the configured upstream CAs, not the platform
	// root, and it has no tenant CA Issuer.
	Upstream bool
	// Issuer is, for a CN identity, the KeyFingerprint of the tenant CA in
	// the presented chain that signed the certificate ("" when none did).
	// The gateway compares it with the tenant's current CA, so that the
	// certificates of a deleted tenant's CA are refused.
	Issuer string
	// IssuedAt is, for a CN identity in our own format, the NotBefore of the
	// certificate (Unix seconds): the gateway refuses edge certificates issued
	// before their SyncService's identity was last re-issued.
	IssuedAt int64
}

// KeyFingerprint is the SHA-256 (hex) of a certificate's public key
// (SubjectPublicKeyInfo): it names the key that signs under a CA, whichever
// certificate carries that key.
func KeyFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// String is a loggable form of the identity (never secret): its SPIFFE ID
// or its CN, as the certificate carries them.
func (id Identity) String() string {
	if !id.SPIFFEID.IsZero() {
		return id.SPIFFEID.String()
	}
	if id.Upstream {
		return "CN=" + strings.Join([]string{id.ComponentID, id.Partition, cnSuffix}, ".")
	}
	cn, _ := FormatCommonName(id.ComponentID, id.Partition, id.TenantSlug)
	return "CN=" + cn
}

// IsSPIFFE reports whether the identity came from a SPIFFE ID.
func (id Identity) IsSPIFFE() bool { return !id.SPIFFEID.IsZero() }

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func checkLabel(what, v string) error {
	if len(v) > 63 || !dnsLabel.MatchString(v) {
		return fmt.Errorf("%s %q: %w", what, v, ErrLabel)
	}
	return nil
}

func checkParts(componentID, partition, tenantSlug string) error {
	return errors.Join(
		checkLabel("component id", componentID),
		checkLabel("partition", partition),
		checkLabel("tenant slug", tenantSlug),
	)
}

// ParseComponentType accepts only the known component types.
func ParseComponentType(s string) (ComponentType, error) {
	for _, t := range ComponentTypes {
		if string(t) == s {
			return t, nil
		}
	}
	return ComponentUnspecified, fmt.Errorf("%q is not one of sync, agent, gateway, checker: %w", s, ErrComponentType)
}

// FormatSPIFFEID builds the SPIFFE ID of a platform-class component.
func FormatSPIFFEID(td spiffeid.TrustDomain, t ComponentType, tenantSlug, partition, componentID string) (spiffeid.ID, error) {
	if _, err := ParseComponentType(string(t)); err != nil {
		return spiffeid.ID{}, err
	}
	if err := checkParts(componentID, partition, tenantSlug); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromSegments(td, string(t), tenantSlug, partition, componentID)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("building SPIFFE ID: %w", err)
	}
	return id, nil
}

// FormatCommonName builds the subject CN of an edge component.
func FormatCommonName(componentID, partition, tenantSlug string) (string, error) {
	if err := checkParts(componentID, partition, tenantSlug); err != nil {
		return "", err
	}
	cn := strings.Join([]string{componentID, partition, tenantSlug, cnSuffix}, ".")
	if len(cn) > MaxCommonNameLength {
		return "", fmt.Errorf("CN %q has %d characters: %w", cn, len(cn), ErrCommonNameLength)
	}
	return cn, nil
}

// TenantCACommonName is the CN of a tenant's intermediate CA.
func TenantCACommonName(tenantSlug string) (string, error) {
	if err := checkLabel("tenant slug", tenantSlug); err != nil {
		return "", err
	}
	cn := "tenant-" + tenantSlug + ".ca." + cnSuffix
	if len(cn) > MaxCommonNameLength {
		return "", fmt.Errorf("tenant CA CN %q has %d characters: %w", cn, len(cn), ErrCommonNameLength)
	}
	return cn, nil
}

// ParseTenantCACommonName returns the tenant slug of a tenant CA's CN.
func ParseTenantCACommonName(cn string) (string, error) {
	rest, ok := strings.CutPrefix(cn, "tenant-")
	if !ok {
		return "", fmt.Errorf("%q: %w", cn, ErrTenantCACommonName)
	}
	slug, ok := strings.CutSuffix(rest, ".ca."+cnSuffix)
	if !ok || checkLabel("tenant slug", slug) != nil {
		return "", fmt.Errorf("%q: %w", cn, ErrTenantCACommonName)
	}
	return slug, nil
}

// Upstream maps identities in ServiceRadar's own format, which name no
// tenant (CN <component_id>.<partition>.serviceradar, SPIFFE ID
// spiffe://<trust domain>/<component_type>/<partition>/<component_id>), to
// one tenant: for single-deployment sites whose agents carry upstream
// certificates. Their chains must be verified against the upstream CAs
// only (mtls.Verifier.UpstreamCAs).
type Upstream struct {
	// TenantSlug is the tenant every upstream-format identity belongs to.
	TenantSlug string
	// TrustDomain is the trust domain of upstream SPIFFE IDs.
	TrustDomain spiffeid.TrustDomain
}

// ErrUpstreamFormat is returned for an upstream-format identity (no tenant
// label) when the classifier does not map them to a tenant.
var ErrUpstreamFormat = errors.New("upstream-format identity (no tenant label); the gateway maps none to a tenant")

// Classifier turns verified certificates into identities.
type Classifier struct {
	// TrustDomain is the SPIFFE trust domain accepted for SPIFFE IDs.
	TrustDomain spiffeid.TrustDomain
	// PlatformSlug is the reserved slug of the platform tenant.
	PlatformSlug string
	// Upstream, when set, maps upstream-format identities to one tenant;
	// nil (the default) refuses them.
	Upstream *Upstream
}

// WithUpstream returns the classifier mapping upstream-format identities
// of a trust domain ("" is the classifier's own) to the tenant of slug.
func (c Classifier) WithUpstream(slug, trustDomain string) (Classifier, error) {
	if err := checkLabel("upstream tenant slug", slug); err != nil {
		return Classifier{}, err
	}
	td := c.TrustDomain
	if trustDomain != "" {
		var err error
		if td, err = spiffeid.TrustDomainFromString(trustDomain); err != nil {
			return Classifier{}, fmt.Errorf("upstream trust domain %q: %w", trustDomain, err)
		}
	}
	c.Upstream = &Upstream{TenantSlug: slug, TrustDomain: td}
	return c, nil
}

// IsUpstreamSPIFFEID reports whether a SPIFFE ID has the upstream form:
// three path segments.
func IsUpstreamSPIFFEID(id spiffeid.ID) bool {
	return strings.Count(strings.TrimPrefix(id.Path(), "/"), "/") == 2
}

// IsUpstreamCommonName reports whether a CN has the upstream form: three
// labels ending in serviceradar.
func IsUpstreamCommonName(cn string) bool {
	labels := strings.Split(cn, ".")
	return len(labels) == 3 && labels[2] == cnSuffix
}

// NewClassifier returns a classifier for a trust domain and platform slug;
// empty values take the defaults.
func NewClassifier(trustDomain, platformSlug string) (Classifier, error) {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	if platformSlug == "" {
		platformSlug = DefaultPlatformSlug
	}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return Classifier{}, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	if err := checkLabel("platform slug", platformSlug); err != nil {
		return Classifier{}, err
	}
	return Classifier{TrustDomain: td, PlatformSlug: platformSlug}, nil
}

// Classify returns the identity of a peer whose chain (leaf first) has already
// been verified. It never trusts anything but the leaf certificate's names.
func (c Classifier) Classify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, ErrNoCertificate
	}
	leaf := chain[0]
	var spiffeURIs []string
	for _, u := range leaf.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			spiffeURIs = append(spiffeURIs, u.String())
		}
	}
	switch len(spiffeURIs) {
	case 0:
		id, err := c.ClassifyCommonName(leaf.Subject.CommonName)
		if err != nil {
			return Identity{}, err
		}
		if !id.Upstream {
			id.Issuer = TenantIssuer(chain, id.TenantSlug)
			id.IssuedAt = leaf.NotBefore.Unix()
		}
		return id, nil
	case 1:
		id, err := spiffeid.FromString(spiffeURIs[0])
		if err != nil {
			return Identity{}, fmt.Errorf("SPIFFE ID %q: %w: %w", spiffeURIs[0], ErrSPIFFEPath, err)
		}
		return c.ClassifySPIFFEID(id)
	default:
		return Identity{}, ErrMultipleSPIFFEIDs
	}
}

// ClassifySPIFFEID returns the platform-class identity of a SPIFFE ID.
func (c Classifier) ClassifySPIFFEID(id spiffeid.ID) (Identity, error) {
	if IsUpstreamSPIFFEID(id) {
		return c.classifyUpstreamSPIFFEID(id)
	}
	if id.TrustDomain() != c.TrustDomain {
		return Identity{}, fmt.Errorf("SPIFFE ID %q, want trust domain %q: %w", id, c.TrustDomain, ErrTrustDomain)
	}
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(segs) != 4 {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", id, ErrSPIFFEPath)
	}
	t, err := ParseComponentType(segs[0])
	if err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	if err := checkParts(segs[3], segs[2], segs[1]); err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	return Identity{
		Class: ClassPlatform, ComponentType: t,
		TenantSlug: segs[1], Partition: segs[2], ComponentID: segs[3],
		SPIFFEID: id,
	}, nil
}

// classifyUpstreamSPIFFEID maps /<type>/<partition>/<component> to the
// configured tenant.
func (c Classifier) classifyUpstreamSPIFFEID(id spiffeid.ID) (Identity, error) {
	if c.Upstream == nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w: %w", id, ErrSPIFFEPath, ErrUpstreamFormat)
	}
	if id.TrustDomain() != c.Upstream.TrustDomain {
		return Identity{}, fmt.Errorf("SPIFFE ID %q, want upstream trust domain %q: %w", id, c.Upstream.TrustDomain, ErrTrustDomain)
	}
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	t, err := ParseComponentType(segs[0])
	if err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	if err := checkParts(segs[2], segs[1], c.Upstream.TenantSlug); err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	return Identity{
		Class: ClassPlatform, ComponentType: t, TenantSlug: c.Upstream.TenantSlug, Partition: segs[1], ComponentID: segs[2],
		SPIFFEID: id, Upstream: true,
	}, nil
}

// TenantIssuer is the KeyFingerprint of the certificate of chain[1:] that
// is the CA of the tenant (by its CN) and whose key signed the leaf, or "".
// The signature decides, not the names: a chain that carries the tenant's
// current CA next to the old CA that signed the leaf names the old one.
func TenantIssuer(chain []*x509.Certificate, tenantSlug string) string {
	if len(chain) < 2 || chain[0] == nil {
		return ""
	}
	for _, c := range chain[1:] {
		if c == nil {
			continue
		}
		if slug, err := ParseTenantCACommonName(c.Subject.CommonName); err != nil || slug != tenantSlug {
			continue
		}
		if chain[0].CheckSignatureFrom(c) == nil {
			return KeyFingerprint(c)
		}
	}
	return ""
}

// ClassifyCommonName returns the identity of an edge CN; the reserved platform
// slug makes it a platform identity. Its Issuer is left empty: Classify sets
// it from the chain.
func (c Classifier) ClassifyCommonName(cn string) (Identity, error) {
	if len(cn) > MaxCommonNameLength {
		return Identity{}, fmt.Errorf("CN of %d characters: %w", len(cn), ErrCommonNameLength)
	}
	if IsUpstreamCommonName(cn) {
		return c.classifyUpstreamCommonName(cn)
	}
	labels := strings.Split(cn, ".")
	if len(labels) != 4 || labels[3] != cnSuffix {
		return Identity{}, fmt.Errorf("CN %q: %w", cn, ErrCommonName)
	}
	if err := checkParts(labels[0], labels[1], labels[2]); err != nil {
		return Identity{}, fmt.Errorf("CN %q: %w", cn, err)
	}
	class := ClassEdge
	if labels[2] == c.PlatformSlug {
		class = ClassPlatform
	}
	return Identity{Class: class, ComponentID: labels[0], Partition: labels[1], TenantSlug: labels[2]}, nil
}

// classifyUpstreamCommonName maps <component>.<partition>.serviceradar to
// the configured tenant.
func (c Classifier) classifyUpstreamCommonName(cn string) (Identity, error) {
	if c.Upstream == nil {
		return Identity{}, fmt.Errorf("CN %q: %w: %w", cn, ErrCommonName, ErrUpstreamFormat)
	}
	labels := strings.Split(cn, ".")
	if err := checkParts(labels[0], labels[1], c.Upstream.TenantSlug); err != nil {
		return Identity{}, fmt.Errorf("CN %q: %w", cn, err)
	}
	class := ClassEdge
	if c.Upstream.TenantSlug == c.PlatformSlug {
		class = ClassPlatform
	}
	return Identity{Class: class, ComponentID: labels[0], Partition: labels[1], TenantSlug: c.Upstream.TenantSlug, Upstream: true}, nil
}
