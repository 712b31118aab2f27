package v1alpha1_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func syncService(ns, name string, typ v1alpha1.ServiceType, platform bool) *v1alpha1.SyncService {
	return &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: typ, Platform: platform, Partition: "default"}}
}

func TestComponentIDIsAlwaysAnIdentityLabel(t *testing.T) {
	long := strings.Repeat("a", 63)
	cases := []struct {
		name   string
		ss     *v1alpha1.SyncService
		tenant string
		want   string // "" when only the form is checked
	}{
		{"platform SaaS worker", syncService("serviceradar-system", "platform-sync", v1alpha1.ServiceTypeSaaS, true), "acme", "platform-sync-acme"},
		{"OnPrem worker", syncService("acme", "edge-1", v1alpha1.ServiceTypeOnPrem, false), "acme", "edge-1"},
		{"tenant SaaS worker", syncService("acme", "lab", v1alpha1.ServiceTypeSaaS, false), "acme", ""},
		{"long platform names are shortened with a hash", syncService("serviceradar-system", long, v1alpha1.ServiceTypeSaaS, true), "tenant-with-a-long-slug", ""},
		{"long tenant names are shortened", syncService("acme", long, v1alpha1.ServiceTypeSaaS, false), "acme", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := v1alpha1.ComponentID(tc.ss, tc.tenant)
			if tc.want != "" && got != tc.want {
				t.Fatalf("ComponentID = %q, want %q", got, tc.want)
			}
			if len(got) > 63 || !dnsLabel.MatchString(got) {
				t.Fatalf("ComponentID %q is not a DNS label", got)
			}
			if _, err := identity.FormatSPIFFEID(spiffeid.RequireTrustDomainFromString("serviceradar.local"), identity.ComponentSync, tc.tenant, "default", got); err != nil {
				t.Fatalf("ComponentID %q cannot be an identity: %v", got, err)
			}
		})
	}
}

// The attack of issue 14: a tenant's own SaaS SyncService named like the
// platform one, or like a SyncService of another namespace or of the other
// service type, never gets the same component id.
func TestComponentIDsOfDifferentSyncServicesDiffer(t *testing.T) {
	platformSync := syncService("serviceradar-system", "platform-sync", v1alpha1.ServiceTypeSaaS, true)
	others := []*v1alpha1.SyncService{
		syncService("acme", "platform-sync", v1alpha1.ServiceTypeSaaS, false),
		syncService("acme-2", "platform-sync", v1alpha1.ServiceTypeSaaS, false),
		syncService("serviceradar-system", "platform-sync", v1alpha1.ServiceTypeSaaS, false),
		syncService("acme", "platform-sync-acme", v1alpha1.ServiceTypeSaaS, false),
		syncService("acme", "platform", v1alpha1.ServiceTypeSaaS, false),
	}
	seen := map[string]string{v1alpha1.ComponentID(platformSync, "acme"): "the platform SyncService"}
	for _, o := range others {
		id := v1alpha1.ComponentID(o, "acme")
		what := o.Namespace + "/" + o.Name + " platform=" + fmt.Sprint(o.Spec.Platform)
		if prev, ok := seen[id]; ok {
			t.Errorf("%s has the component id %q of %s", what, id, prev)
		}
		seen[id] = what
	}
}

// The hash is taken over the parts as a tuple: SyncServices whose
// namespace, name and tenant concatenate to the same text still get
// different component ids (and object names).
func TestComponentIDHashesTheTupleNotItsConcatenation(t *testing.T) {
	a := syncService("a", "lab", v1alpha1.ServiceTypeSaaS, false)    // "a" + "lab" + "labx"
	b := syncService("alab", "lab", v1alpha1.ServiceTypeSaaS, false) // "alab" + "lab" + "x"
	if idA, idB := v1alpha1.ComponentID(a, "labx"), v1alpha1.ComponentID(b, "x"); idA == idB {
		t.Fatalf("two SyncServices share the component id %q", idA)
	}
	if x, y := v1alpha1.HashedName("p", "ab", "c"), v1alpha1.HashedName("p", "a", "bc"); x == y {
		t.Fatalf("(ab, c) and (a, bc) share the name %q", x)
	}
}
