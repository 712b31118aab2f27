package identity_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
)

// FuzzClassifyCommonName checks that the CN parser never panics and that
// whatever it accepts formats back to exactly the same CN.
func FuzzClassifyCommonName(f *testing.F) {
	for _, s := range []string{
		"edge-1.hq.acme.serviceradar", "platform-sync.default.platform.serviceradar", "a.b.c.d.serviceradar",
		"edge.acme.serviceradar", "..acme.serviceradar", "EDGE.hq.acme.serviceradar", "x.y.z.serviceradar.",
	} {
		f.Add(s)
	}
	c, _ := identity.NewClassifier("", "")
	f.Fuzz(func(t *testing.T, cn string) {
		id, err := c.ClassifyCommonName(cn)
		if err != nil {
			return
		}
		again, err := identity.FormatCommonName(id.ComponentID, id.Partition, id.TenantSlug)
		if err != nil || again != cn {
			t.Fatalf("accepted %q but it formats to %q (%v)", cn, again, err)
		}
		if (id.TenantSlug == c.PlatformSlug) != (id.Class == identity.ClassPlatform) {
			t.Fatalf("%q: class %q for tenant %q", cn, id.Class, id.TenantSlug)
		}
	})
}

// FuzzClassifySPIFFEID checks the SPIFFE parser the same way.
func FuzzClassifySPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://serviceradar.local/sync/acme/default/worker-1", "spiffe://serviceradar.local/robot/acme/default/r",
		"spiffe://evil.example/sync/acme/default/w", "spiffe://serviceradar.local/sync/acme/w",
		"spiffe://serviceradar.local/agent/acme/default/w/x", "spiffe://serviceradar.local//acme/default/w",
	} {
		f.Add(s)
	}
	c, _ := identity.NewClassifier("", "")
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		id, err := c.ClassifySPIFFEID(raw)
		if err != nil {
			return
		}
		again, err := identity.FormatSPIFFEID(c.TrustDomain, id.ComponentType, id.TenantSlug, id.Partition, id.ComponentID)
		if err != nil || again != raw {
			t.Fatalf("accepted %q but it formats to %q (%v)", s, again, err)
		}
		if id.Class != identity.ClassPlatform || id.ComponentType == identity.ComponentUnspecified {
			t.Fatalf("%q: class %q type %q", s, id.Class, id.ComponentType)
		}
	})
}
