package workload_test

import (
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/workload"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestComponentIDIsAlwaysAnIdentityLabel(t *testing.T) {
	long := strings.Repeat("a", 60)
	cases := []struct {
		name, ss, tenant string
		typ              v1alpha1.ServiceType
		want             string
	}{
		{"SaaS worker", "platform-sync", "acme", v1alpha1.ServiceTypeSaaS, "platform-sync-acme"},
		{"OnPrem worker", "edge-1", "acme", v1alpha1.ServiceTypeOnPrem, "edge-1"},
		{"long SaaS names are shortened with a hash", long, "tenant-with-a-long-slug", v1alpha1.ServiceTypeSaaS, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: tc.ss}, Spec: v1alpha1.SyncServiceSpec{ServiceType: tc.typ}}
			got := workload.ComponentID(ss, tc.tenant)
			if tc.want != "" && got != tc.want {
				t.Fatalf("ComponentID = %q, want %q", got, tc.want)
			}
			if len(got) > 63 || !dnsLabel.MatchString(got) {
				t.Fatalf("ComponentID %q is not a DNS label", got)
			}
			if _, err := identity.FormatCommonName(got, "default", "acme"); err != nil {
				t.Fatalf("ComponentID %q cannot be an identity: %v", got, err)
			}
		})
	}
	a := workload.Name(long, "tenant-a")
	b := workload.Name(long, "tenant-b")
	if a == b {
		t.Fatalf("two long names collide: %s", a)
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
