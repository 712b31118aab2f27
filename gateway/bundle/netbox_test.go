package bundle_test

import (
	"testing"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
)

// TestNetBoxSettingsReachTheWorker: spec.netbox travels in the bundle of a
// netbox source's worker, and only of a netbox source.
func TestNetBoxSettingsReachTheWorker(t *testing.T) {
	in := world()
	in.TenantSlug, in.ComponentID, in.Partition, in.Edge = "acme", "edge", "default", true
	settings := &v1alpha1.NetBoxSpec{ExcludeVirtualMachines: true,
		StatusAvailability: map[string]v1alpha1.NetBoxAvailability{"staged": v1alpha1.NetBoxAvailable}}
	for i := range in.Sources {
		in.Sources[i].Spec.NetBox = settings // an armis source with it never passes the CRD; the bundle ignores it too
	}
	edge, err := bundle.SyncServiceFor(in, "platform")
	if err != nil || edge == nil {
		t.Fatalf("SyncServiceFor = %v, %v", edge, err)
	}
	got := bundle.BuildSync(in, edge, "platform").Sources["acme/netbox"].NetBox
	if got == nil || !got.ExcludeVirtualMachines || len(got.StatusAvailability) != 1 || got.StatusAvailability["staged"] != "Available" {
		t.Fatalf("netbox settings %+v", got)
	}
	in.ComponentID, in.Edge = "platform-sync-acme", false
	platform, err := bundle.SyncServiceFor(in, "platform")
	if err != nil || platform == nil {
		t.Fatalf("SyncServiceFor = %v, %v", platform, err)
	}
	if s := bundle.BuildSync(in, platform, "platform").Sources["acme/armis"]; s.NetBox != nil {
		t.Fatalf("an armis source carries netbox settings: %+v", s.NetBox)
	}
}
