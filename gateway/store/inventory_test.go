package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// TestVirtualMACsNeverIdentify runs on PostgreSQL: the virtual MAC a
// first-hop redundancy pair shares (HSRP, VRRP, GLBP) is no device's
// identifier and no device's MAC, whichever source reports it, so it never
// merges a router with another device.
func TestVirtualMACsNeverIdentify(t *testing.T) {
	type step struct {
		integration string
		devices     []store.Device
	}
	const hsrp, vrrp, glbp = "00:00:0c:07:ac:01", "00-00-5E-00-01-0A", "0007.b400.0102"
	for _, tc := range []struct {
		name    string
		steps   []step
		devices int
	}{
		{"a NetBox router and an Armis device seeing its HSRP MAC stay two devices", []step{
			{"netbox", []store.Device{{DeviceID: "1", MACs: []string{hsrp, "00:1a:a1:00:00:01"}}}},
			{"armis", []store.Device{{DeviceID: "500", MACs: []string{hsrp}, IP: "10.9.0.1"}}},
		}, 2},
		{"an HSRP pair of one source and the other source's device stay three", []step{
			{"netbox", []store.Device{{DeviceID: "1", MACs: []string{"00:1a:a1:00:00:01", hsrp}}, {DeviceID: "2", MACs: []string{"00:1a:a1:00:00:02", hsrp}}}},
			{"faker", []store.Device{{DeviceID: "f1", MACs: []string{hsrp}}}},
		}, 3},
		{"two sources reporting only a VRRP MAC stay two devices", []step{
			{"faker", []store.Device{{DeviceID: "f1", MACs: []string{vrrp}}}},
			{"armis", []store.Device{{DeviceID: "7", MACs: []string{vrrp}}}},
		}, 2},
		{"a GLBP MAC merges nothing either", []step{
			{"armis", []store.Device{{DeviceID: "8", MACs: []string{glbp}}}},
			{"netbox", []store.Device{{DeviceID: "9", MACs: []string{glbp}}}},
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for _, st := range tc.steps {
				if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: st.integration,
					SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: st.devices}); err != nil {
					t.Fatal(err)
				}
			}
			if got := count(t, s, "acme", ""); got != tc.devices {
				t.Fatalf("%d devices, want %d", got, tc.devices)
			}
			if got := count(t, s, "acme", "mac IN ('00000C07AC01', '00005E00010A', '0007B4000102')"); got != 0 {
				t.Fatalf("%d devices have a virtual MAC as their MAC", got)
			}
			var ids int
			if err := s.Pool().QueryRow(context.Background(),
				"SELECT count(*) FROM tenant_acme.device_identifiers WHERE identifier_value IN ('00000C07AC01', '00005E00010A', '0007B4000102')").Scan(&ids); err != nil || ids != 0 {
				t.Fatalf("%d virtual MAC identifiers (%v)", ids, err)
			}
		})
	}
}

// TestVirtualMachineIDsAreTheirOwn runs on PostgreSQL: NetBox numbers
// virtual machines apart from devices, so VM 5 and device 5 are two
// devices, each found again by its own qualified id.
func TestVirtualMachineIDsAreTheirOwn(t *testing.T) {
	s := open(t)
	for range 2 {
		if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "netbox",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{
				{DeviceID: "5", Hostname: "router-5"},
				{DeviceID: "5", DeviceIDType: "netbox_vm_id", Hostname: "vm-5"},
			}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, s, "acme", ""); got != 2 {
		t.Fatalf("%d devices, want device 5 and VM 5", got)
	}
	rows, err := s.Pool().Query(context.Background(), "SELECT identifier_type FROM tenant_acme.device_identifiers ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for rows.Next() {
		var typ string
		if err := rows.Scan(&typ); err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
	}
	if !slices.Equal(types, []string{"netbox_device_id", "netbox_vm_id"}) {
		t.Fatalf("identifier types %v", types)
	}
}

// TestSweepTargetsCoverAllIPs runs on PostgreSQL: a device is swept at
// every address its source listed in all_ips, not only at its ip.
func TestSweepTargetsCoverAllIPs(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "netbox",
		SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{
			{DeviceID: "1", IP: "10.0.0.1", Hostname: "r1", Metadata: map[string]string{"all_ips": "10.0.0.1,100.64.0.1,2001:db8::1"}},
			{DeviceID: "2", IP: "10.0.0.2", Hostname: "r2"},
		}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.SweepTargets(ctx, "acme", "default", []string{srcUID})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, tg := range got {
		ips = append(ips, tg.IP+"@"+tg.Hostname)
	}
	if want := "[10.0.0.1@r1 10.0.0.2@r2 100.64.0.1@r1 2001:db8::1@r1]"; fmt.Sprint(ips) != want {
		t.Fatalf("sweep targets %v, want %s", ips, want)
	}
}
