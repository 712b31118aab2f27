package platform_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/platform"
)

func TestTenantIDIsUUIDv5OfThePlatformAndSlug(t *testing.T) {
	p := uuid.MustParse("267967d7-c702-4a69-a809-1c5c91c26f5a")
	other := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	cases := []struct {
		name string
		a, b uuid.UUID
		same bool
	}{
		{"stable for the same platform and slug", platform.TenantID(p, "acme"), platform.TenantID(p, "acme"), true},
		{"differs between slugs", platform.TenantID(p, "acme"), platform.TenantID(p, "globex"), false},
		{"differs between platforms", platform.TenantID(p, "acme"), platform.TenantID(other, "acme"), false},
	}
	for _, tc := range cases {
		if (tc.a == tc.b) != tc.same {
			t.Errorf("%s: %s vs %s", tc.name, tc.a, tc.b)
		}
	}
	id := platform.TenantID(p, "acme")
	if id.Version() != 5 || id.Variant() != uuid.RFC4122 {
		t.Fatalf("tenant ID %s is not a UUIDv5", id)
	}
}
