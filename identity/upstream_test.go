package identity_test

import (
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
)

func TestUpstreamFormatsMapToOneTenantOnlyWhenConfigured(t *testing.T) {
	plain, _ := identity.NewClassifier("", "")
	mapped, err := plain.WithUpstream("acme", "")
	if err != nil {
		t.Fatal(err)
	}
	otherTD, err := plain.WithUpstream("acme", "upstream.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.WithUpstream("Not A Slug", ""); !errors.Is(err, identity.ErrLabel) {
		t.Fatalf("an invalid tenant slug: %v", err)
	}
	cases := []struct {
		name string
		c    identity.Classifier
		cn   string
		uri  string
		want identity.Identity
		err  error
	}{
		{"upstream CN, mapping off", plain, "agent-1.default.serviceradar", "", identity.Identity{}, identity.ErrUpstreamFormat},
		{"upstream SVID, mapping off", plain, "", "spiffe://serviceradar.local/agent/default/agent-1", identity.Identity{}, identity.ErrUpstreamFormat},
		{"upstream CN", mapped, "agent-1.default.serviceradar", "",
			identity.Identity{Class: identity.ClassEdge, TenantSlug: "acme", Partition: "default", ComponentID: "agent-1", Upstream: true}, nil},
		{"upstream SVID", mapped, "", "spiffe://serviceradar.local/sync/dc1/w",
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme", Partition: "dc1", ComponentID: "w", Upstream: true}, nil},
		{"upstream SVID in its own trust domain", otherTD, "", "spiffe://upstream.example/agent/default/a",
			identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentAgent, TenantSlug: "acme", Partition: "default", ComponentID: "a", Upstream: true}, nil},
		{"upstream SVID in this system's trust domain when another is configured", otherTD, "", "spiffe://serviceradar.local/agent/default/a", identity.Identity{}, identity.ErrTrustDomain},
		{"tenant SVID in the upstream trust domain", otherTD, "", "spiffe://upstream.example/agent/globex/default/a", identity.Identity{}, identity.ErrTrustDomain},
		{"upstream SVID of an unknown type", mapped, "", "spiffe://serviceradar.local/robot/default/r", identity.Identity{}, identity.ErrComponentType},
		{"upstream CN with a bad label", mapped, "Agent_1.default.serviceradar", "", identity.Identity{}, identity.ErrLabel},
		{"a tenant CN keeps its own tenant", mapped, "edge.hq.globex.serviceradar", "",
			identity.Identity{Class: identity.ClassEdge, TenantSlug: "globex", Partition: "hq", ComponentID: "edge"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var chain = leaf(tc.cn)
			if tc.uri != "" {
				chain = leaf(tc.cn, tc.uri)
			}
			got, err := tc.c.Classify(chain)
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
			if want := chain[0].NotBefore.Unix(); got.ComponentType == identity.ComponentUnspecified && !got.Upstream && got.IssuedAt != want {
				t.Fatalf("issued at %d, want the certificate's NotBefore %d", got.IssuedAt, want)
			}
			got.IssuedAt = 0
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	id, _ := mapped.Classify(leaf("agent-1.default.serviceradar"))
	if id.String() != "CN=agent-1.default.serviceradar" {
		t.Fatalf("String() = %q", id.String())
	}
}
