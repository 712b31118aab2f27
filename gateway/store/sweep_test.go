package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// TestSweepTargetsAreTheDevicesSourcesStillReport runs on PostgreSQL: the
// sweep targets of a partition are the devices with an IP that the given
// sources report and have not retracted, whatever their availability.
func TestSweepTargetsAreTheDevicesSourcesStillReport(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const netbox, armis, other = "0b5f5f6e-0000-4c59-9d7e-00000000000a", "0b5f5f6e-0000-4c59-9d7e-00000000000b", "0b5f5f6e-0000-4c59-9d7e-00000000000c"
	yes, no := true, false
	dev := func(kind string, n int, ip string, available *bool) store.Device {
		return store.Device{DeviceID: fmt.Sprint(n), IP: ip, Hostname: fmt.Sprintf("%s-%d", kind, n), IsAvailable: available,
			Metadata: map[string]string{"integration_type": kind, kind + "_device_id": fmt.Sprint(n)}}
	}
	apply := func(source, kind, partition string, complete bool, devs ...store.Device) {
		t.Helper()
		_, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: partition, Integration: kind,
			SourceUID: source, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: complete, FullFetch: complete, Devices: devs})
		if err != nil {
			t.Fatal(err)
		}
	}
	// NetBox does not speak about availability.
	apply(netbox, "netbox", "default", true, dev("netbox", 1, "10.5.0.1", nil), dev("netbox", 2, "10.5.0.2", nil),
		store.Device{DeviceID: "3", MACs: []string{"00:1b:44:11:3a:b7"}, Metadata: map[string]string{"integration_type": "netbox", "netbox_device_id": "3"}})
	// Armis reports one device down; a complete run without 13 retracts it.
	apply(armis, "armis", "default", true, dev("armis", 11, "10.5.0.11", &yes), dev("armis", 12, "10.5.0.12", &no), dev("armis", 13, "10.5.0.13", &yes))
	apply(armis, "armis", "default", true, dev("armis", 11, "10.5.0.11", &yes), dev("armis", 12, "10.5.0.12", &no))
	// Another partition, and a source not asked about.
	apply(armis, "armis", "lab", false, dev("armis", 21, "10.5.0.21", &yes))
	apply(other, "armis", "default", false, dev("armis", 31, "10.5.0.31", &yes))

	got, err := s.SweepTargets(ctx, "acme", "default", []string{netbox, armis})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, tg := range got {
		ips = append(ips, tg.IP+"@"+map[string]string{netbox: "netbox", armis: "armis"}[tg.SourceUID])
	}
	want := "[10.5.0.1@netbox 10.5.0.11@armis 10.5.0.12@armis 10.5.0.2@netbox]"
	if fmt.Sprint(ips) != want {
		t.Fatalf("sweep targets %v, want %s", ips, want)
	}
	if none, err := s.SweepTargets(ctx, "globex", "default", []string{netbox, armis}); err != nil || len(none) != 0 {
		t.Fatalf("another tenant's targets: %v %v", none, err)
	}
}
