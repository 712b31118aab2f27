package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxLabelLength is the longest DNS label, and so the longest object name
// and component id this package makes.
const maxLabelLength = 63

// hashLength is the number of hex digits of the hash that names carry: 64
// bits, so that no two tuples share a name unless someone finds a SHA-256
// collision of that length (about 2^64 tries even for a chosen target).
const hashLength = 16

// HashedName is a DNS label of at most 63 characters: as much of prefix as
// fits, then "-" and a 64-bit hash of parts as a tuple (the hash alone when
// no prefix fits). The parts are hashed joined with a NUL byte, which no
// Kubernetes name contains, so ("a-b", "c") and ("a", "b-c") hash
// differently: the name is injective in parts, whatever the prefix.
func HashedName(prefix string, parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	hash := hex.EncodeToString(h.Sum(nil))[:hashLength]
	room := min(maxLabelLength-len(hash)-1, len(prefix))
	if room <= 0 {
		return hash
	}
	p := strings.TrimRight(prefix[:room], "-")
	if p == "" {
		return hash
	}
	return p + "-" + hash
}

// ComponentID is the component id of the worker a SyncService runs for a
// tenant, as it appears in the worker's certificate. The manager and the
// gateway both derive it here, so they always agree. One identity names one
// worker (DESIGN.md section 5):
//
//   - a platform SyncService's worker for a tenant is "<name>-<tenant>"
//     (shortened with a hash when longer than a DNS label): the name and the
//     tenant slug, which the SPIFFE ID also carries, tell it apart from the
//     platform's other SyncServices, and only SyncServices in platform
//     namespaces are ever served as platform ones;
//   - any other SaaS SyncService's worker is "<name>-<hash>", the hash taken
//     over the service type, namespace, name and tenant, so that a tenant's
//     SyncService named like a platform one, or like one of another
//     namespace, never gets its identity;
//   - an OnPrem worker is the SyncService's name, readable in its edge CN,
//     which RFC 5280 limits to 64 characters, too few for a hash: its
//     uniqueness within the tenant and partition is checked instead (the
//     manager issues no certificate and the gateway serves neither while two
//     OnPrem SyncServices of a tenant share a name and partition).
func ComponentID(ss *SyncService, tenantSlug string) string {
	switch {
	case ss.Spec.ServiceType == ServiceTypeOnPrem:
		return ss.Name
	case ss.Spec.Platform:
		joined := ss.Name + "-" + tenantSlug
		if len(joined) <= maxLabelLength {
			return joined
		}
		return HashedName(joined, ss.Name, tenantSlug)
	default:
		return HashedName(ss.Name, string(ServiceTypeSaaS), ss.Namespace, ss.Name, tenantSlug)
	}
}
