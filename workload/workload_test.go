package workload_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/workload"
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
			got := workload.ComponentID(tc.ss, tc.tenant)
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
	seen := map[string]string{workload.ComponentID(platformSync, "acme"): "the platform SyncService"}
	for _, o := range others {
		id := workload.ComponentID(o, "acme")
		what := o.Namespace + "/" + o.Name + " platform=" + fmt.Sprint(o.Spec.Platform)
		if prev, ok := seen[id]; ok {
			t.Errorf("%s has the component id %q of %s", what, id, prev)
		}
		seen[id] = what
	}
}

// Object names are injective: parts that join to the same string, and long
// parts that share their first characters, give different names.
func TestNamesAreInjective(t *testing.T) {
	long := strings.Repeat("x", 70)
	cases := []struct {
		name string
		a, b []string
	}{
		{"the same join of different parts", []string{"sync", "a-b", "c"}, []string{"sync", "a", "b-c"}},
		{"a platform worker and another SyncService's worker", []string{"sync", "platform-sync", "acme"}, []string{"sync", "platform", "sync-acme"}},
		{"long parts with a common prefix", []string{"sync", long + "1", "acme"}, []string{"sync", long + "2", "acme"}},
		{"long tenants with a common prefix", []string{"sync", "s", strings.Repeat("t", 60) + "a"}, []string{"sync", "s", strings.Repeat("t", 60) + "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := workload.Name(tc.a...), workload.Name(tc.b...)
			if a == b {
				t.Fatalf("%v and %v are both named %q", tc.a, tc.b, a)
			}
			for _, n := range []string{a, b} {
				if len(n) > 63 || !dnsLabel.MatchString(n) {
					t.Fatalf("name %q is not a DNS label", n)
				}
			}
		})
	}
	// The hash that makes them so is long enough to rely on: 64 bits.
	n := workload.Name("sync", "platform-sync", "acme")
	if i := strings.LastIndex(n, "-"); len(n)-i-1 < 16 {
		t.Fatalf("name %q carries a hash of fewer than 64 bits", n)
	}
}

func TestBootstrapJSONIsStable(t *testing.T) {
	b := workload.Bootstrap{GatewayAddress: "gw:50052", ComponentID: "c", Partition: "default", TenantSlug: "acme", Identity: workload.FileIdentity("/id")}
	one, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	two, _ := b.JSON()
	if string(one) != string(two) || !strings.Contains(string(one), `"cert_file": "/id/tls.crt"`) {
		t.Fatalf("bootstrap JSON: %s", one)
	}
}
