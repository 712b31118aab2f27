package tenancy_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/tenancy"
)

func TestResolveNamesOneServableTenantOrNone(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := metav1.Now()
	tenant := func(name, slug string, age int, platform, deleting bool) v1alpha1.Tenant {
		tn := v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(base.Add(time.Duration(age) * time.Second))},
			Spec: v1alpha1.TenantSpec{Slug: slug, Platform: platform}}
		if deleting {
			tn.DeletionTimestamp = &now
		}
		return tn
	}
	long := strings.Repeat("l", v1alpha1.MaxSlugLength+1)
	for _, tc := range []struct {
		name    string
		slug    string
		tenants []v1alpha1.Tenant
		want    string
	}{
		{"one tenant", "acme", []v1alpha1.Tenant{tenant("acme", "acme", 0, false, false), tenant("globex", "globex", 0, false, false)}, "acme"},
		{"none", "acme", []v1alpha1.Tenant{tenant("globex", "globex", 0, false, false)}, ""},
		{"being deleted", "acme", []v1alpha1.Tenant{tenant("acme", "acme", 0, false, true)}, ""},
		{"two non-platform tenants", "acme", []v1alpha1.Tenant{tenant("b", "acme", 1, false, false), tenant("a", "acme", 0, false, false)}, ""},
		{"a deleted one and one created again", "acme", []v1alpha1.Tenant{tenant("old", "acme", 0, false, true), tenant("new", "acme", 1, false, false)}, ""},
		{"two platform tenants: the oldest", "platform", []v1alpha1.Tenant{tenant("young", "platform", 1, true, false), tenant("old", "platform", 0, true, false)}, "old"},
		{"same age: by name", "platform", []v1alpha1.Tenant{tenant("b", "platform", 0, true, false), tenant("a", "platform", 0, true, false)}, "a"},
		{"an older non-platform tenant with the platform slug", "platform", []v1alpha1.Tenant{tenant("p", "platform", 1, true, false), tenant("x", "platform", 0, false, false)}, ""},
		{"the oldest platform tenant being deleted", "platform", []v1alpha1.Tenant{tenant("old", "platform", 0, true, true), tenant("young", "platform", 1, true, false)}, ""},
		{"a legacy slug longer than the limit", long, []v1alpha1.Tenant{tenant("legacy", long, 0, false, false)}, ""},
		{"a slug that is not a DNS label", "Acme", []v1alpha1.Tenant{tenant("upper", "Acme", 0, false, false)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tenancy.Resolve(tc.tenants, tc.slug)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tc.want {
				t.Fatalf("Resolve(%q) = %q, want %q", tc.slug, name, tc.want)
			}
		})
	}
}

func TestValidSlug(t *testing.T) {
	for _, tc := range []struct {
		slug string
		ok   bool
	}{
		{"acme", true},
		{"a-b", true},
		{strings.Repeat("a", v1alpha1.MaxSlugLength), true},
		{strings.Repeat("a", v1alpha1.MaxSlugLength+1), false},
		{"", false},
		{"a_b", false},
		{"Acme", false},
		{"-a", false},
		{"a.b", false},
	} {
		if err := v1alpha1.ValidSlug(tc.slug); (err == nil) != tc.ok {
			t.Errorf("ValidSlug(%q) = %v, want ok=%v", tc.slug, err, tc.ok)
		}
	}
}
