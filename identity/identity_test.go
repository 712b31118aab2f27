package identity_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
)

func leaf(cn string, uris ...string) []*x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, parsed)
	}
	return []*x509.Certificate{c}
}

func TestClassify(t *testing.T) {
	c, err := identity.NewClassifier("", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  identity.Identity
		err   error
	}{
		{"sync SVID", leaf("", "spiffe://serviceradar.local/sync/acme/default/worker-1"),
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme", Partition: "default", ComponentID: "worker-1"}, nil},
		{"agent SVID", leaf("ignored.cn", "spiffe://serviceradar.local/agent/globex/dc1/agent-7"),
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentAgent, TenantSlug: "globex", Partition: "dc1", ComponentID: "agent-7"}, nil},
		{"gateway SVID", leaf("", "spiffe://serviceradar.local/gateway/platform/default/gw-0"),
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentGateway, TenantSlug: "platform", Partition: "default", ComponentID: "gw-0"}, nil},
		{"checker SVID", leaf("", "spiffe://serviceradar.local/checker/acme/default/snmp"),
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentChecker, TenantSlug: "acme", Partition: "default", ComponentID: "snmp"}, nil},
		{"edge CN", leaf("edge-1.hq.acme.serviceradar"),
			identity.Identity{Class: identity.ClassEdge, TenantSlug: "acme", Partition: "hq", ComponentID: "edge-1"}, nil},
		{"platform CN without SPIFFE", leaf("platform-sync.default.platform.serviceradar"),
			identity.Identity{Class: identity.ClassPlatform, TenantSlug: "platform", Partition: "default", ComponentID: "platform-sync"}, nil},
		{"unknown component type", leaf("", "spiffe://serviceradar.local/robot/acme/default/r1"), identity.Identity{}, identity.ErrComponentType},
		{"other trust domain", leaf("", "spiffe://evil.example/sync/acme/default/w"), identity.Identity{}, identity.ErrTrustDomain},
		{"short SPIFFE path", leaf("", "spiffe://serviceradar.local/sync/acme/w"), identity.Identity{}, identity.ErrSPIFFEPath},
		{"long SPIFFE path", leaf("", "spiffe://serviceradar.local/sync/acme/default/w/extra"), identity.Identity{}, identity.ErrSPIFFEPath},
		{"two SPIFFE IDs", leaf("", "spiffe://serviceradar.local/sync/acme/default/w", "spiffe://serviceradar.local/sync/globex/default/w"), identity.Identity{}, identity.ErrMultipleSPIFFEIDs},
		{"upper-case tenant in SPIFFE path", leaf("", "spiffe://serviceradar.local/sync/ACME/default/w"), identity.Identity{}, identity.ErrLabel},
		{"CN with three labels", leaf("edge-1.acme.serviceradar"), identity.Identity{}, identity.ErrCommonName},
		{"CN with five labels", leaf("a.b.c.d.serviceradar"), identity.Identity{}, identity.ErrCommonName},
		{"CN with the wrong suffix", leaf("edge-1.hq.acme.example"), identity.Identity{}, identity.ErrCommonName},
		{"CN with an empty label", leaf("edge-1..acme.serviceradar"), identity.Identity{}, identity.ErrLabel},
		{"CN with an underscore", leaf("edge_1.hq.acme.serviceradar"), identity.Identity{}, identity.ErrLabel},
		{"CN longer than 64 characters", leaf(strings.Repeat("e", 40) + ".default.acme.serviceradar"), identity.Identity{}, identity.ErrCommonNameLength},
		{"no certificate", nil, identity.Identity{}, identity.ErrNoCertificate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Classify(tc.chain)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.SPIFFEID = spiffeid.ID{}
			// A CN identity of a tenant carries its certificate's issuance time.
			if want := tc.chain[0].NotBefore.Unix(); got.ComponentType == identity.ComponentUnspecified && !got.Upstream && got.IssuedAt != want {
				t.Fatalf("issued at %d, want the certificate's NotBefore %d", got.IssuedAt, want)
			}
			got.IssuedAt = 0
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfiguredPlatformSlug(t *testing.T) {
	c, err := identity.NewClassifier("example.org", "ops")
	if err != nil {
		t.Fatal(err)
	}
	for cn, want := range map[string]identity.Class{
		"w.default.ops.serviceradar":      identity.ClassPlatform,
		"w.default.platform.serviceradar": identity.ClassEdge,
	} {
		got, err := c.Classify(leaf(cn))
		if err != nil || got.Class != want {
			t.Errorf("%s: class %q err %v, want %q", cn, got.Class, err, want)
		}
	}
	if _, err := c.Classify(leaf("", "spiffe://serviceradar.local/sync/a/b/c")); !errors.Is(err, identity.ErrTrustDomain) {
		t.Errorf("default trust domain accepted under example.org: %v", err)
	}
}

func TestFormatAndParseAgree(t *testing.T) {
	c, _ := identity.NewClassifier("", "")
	for _, tt := range identity.ComponentTypes {
		id, err := identity.FormatSPIFFEID(c.TrustDomain, tt, "acme", "dc-2", "comp-9")
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.ClassifySPIFFEID(id)
		if err != nil || got.ComponentType != tt || got.TenantSlug != "acme" || got.Partition != "dc-2" || got.ComponentID != "comp-9" {
			t.Fatalf("%s round trip: %+v %v", id, got, err)
		}
	}
	cn, err := identity.FormatCommonName("comp-9", "dc-2", "acme")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ClassifyCommonName(cn)
	if err != nil || got.TenantSlug != "acme" || got.Partition != "dc-2" || got.ComponentID != "comp-9" {
		t.Fatalf("%s round trip: %+v %v", cn, got, err)
	}
	caCN, _ := identity.TenantCACommonName("acme")
	if slug, err := identity.ParseTenantCACommonName(caCN); err != nil || slug != "acme" || caCN != "tenant-acme.ca.serviceradar" {
		t.Fatalf("tenant CA CN %q -> %q %v", caCN, slug, err)
	}
	for _, bad := range []struct {
		name string
		err  error
		run  func() error
	}{
		{"format unknown type", identity.ErrComponentType, func() error {
			_, err := identity.FormatSPIFFEID(c.TrustDomain, "robot", "acme", "default", "x")
			return err
		}},
		{"format CN with dots in a label", identity.ErrLabel, func() error {
			_, err := identity.FormatCommonName("a.b", "default", "acme")
			return err
		}},
		{"parse a non-tenant CA CN", identity.ErrTenantCACommonName, func() error {
			_, err := identity.ParseTenantCACommonName("root.ca.serviceradar")
			return err
		}},
	} {
		if err := bad.run(); !errors.Is(err, bad.err) {
			t.Errorf("%s: err = %v, want %v", bad.name, err, bad.err)
		}
	}
}
