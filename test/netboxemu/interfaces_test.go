package netboxemu

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
)

func TestInterfacesAndMACs(t *testing.T) {
	cases := []struct{ devices, perDevice int }{
		{40, 1},
		{40, 3},
		{25, 5},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("N=%d/K=%d", tc.devices, tc.perDevice), func(t *testing.T) {
			_, c := start(t, Options{Seed: 6, Devices: tc.devices, InterfacesPerDevice: tc.perDevice})
			ifaces := decodeAll[Interface](t, must0(c.fetchAll(t, InterfacesPath+"?limit=37")))
			macs := decodeAll[MACAddress](t, must0(c.fetchAll(t, MACAddressesPath+"?limit=37")))
			withMAC := tc.perDevice - 1
			if tc.perDevice == 1 {
				withMAC = 1
			}
			// Router pairs carry their shared virtual MAC on eth0 besides
			// their own.
			shared := 0
			for _, it := range ifaces {
				if it.MACAddress != nil && len(it.MACAddresses) == 2 {
					shared++
				}
			}
			if len(ifaces) != tc.devices*tc.perDevice || len(macs) != tc.devices*withMAC+shared {
				t.Fatalf("%d interfaces and %d MACs, want %d and %d", len(ifaces), len(macs), tc.devices*tc.perDevice, tc.devices*withMAC+shared)
			}
			ifaceMACs := map[int][]string{} // interface id -> its MACs
			perDevice := map[int]int{}
			primaries := map[string]bool{}
			for _, it := range ifaces {
				perDevice[it.Device.ID]++
				if it.MACAddress == nil {
					if it.Name != "lo0" || it.PrimaryMACAddress != nil || len(it.MACAddresses) != 0 {
						t.Fatalf("interface %d without MAC: %+v", it.ID, it)
					}
					continue
				}
				if it.PrimaryMACAddress == nil || it.PrimaryMACAddress.MACAddress != *it.MACAddress {
					t.Fatalf("interface %d: mac_address %s, primary %+v", it.ID, *it.MACAddress, it.PrimaryMACAddress)
				}
				if primaries[*it.MACAddress] || results.NormalizeMAC(*it.MACAddress) == "" {
					t.Fatalf("interface %d: primary MAC %s twice, or not a device's", it.ID, *it.MACAddress)
				}
				primaries[*it.MACAddress] = true
				if !slices.IsSortedFunc(it.MACAddresses, func(a, b MACRef) int { return strings.Compare(a.MACAddress, b.MACAddress) }) {
					t.Fatalf("interface %d: MACs %v not in address order", it.ID, it.MACAddresses)
				}
				for _, m := range it.MACAddresses {
					ifaceMACs[it.ID] = append(ifaceMACs[it.ID], m.MACAddress)
					if m.MACAddress != *it.MACAddress && !results.VirtualMAC(strings.ReplaceAll(m.MACAddress, ":", "")) {
						t.Fatalf("interface %d: second MAC %s is not a first-hop redundancy MAC", it.ID, m.MACAddress)
					}
				}
			}
			for id, k := range perDevice {
				if k != tc.perDevice {
					t.Fatalf("device %d has %d interfaces, want %d", id, k, tc.perDevice)
				}
			}
			if !slices.IsSortedFunc(macs, func(a, b MACAddress) int { return strings.Compare(a.MACAddress, b.MACAddress) }) {
				t.Fatal("MAC addresses are not in address order, as NetBox 4.2+ lists them")
			}
			for _, m := range macs {
				if m.AssignedObjectType != "dcim.interface" || !slices.Contains(ifaceMACs[m.AssignedObjectID], m.MACAddress) {
					t.Fatalf("MAC %s assigned to %s %d, whose MACs are %q", m.MACAddress, m.AssignedObjectType, m.AssignedObjectID, ifaceMACs[m.AssignedObjectID])
				}
			}
		})
	}
}

func TestInterfaceFilters(t *testing.T) {
	s, c := start(t, Options{Seed: 6, Devices: 50})
	d7, _ := s.Device(7, c.base)
	byDevice := decodeAll[Interface](t, must0(c.fetchAll(t, InterfacesPath+"?device_id=7")))
	if len(byDevice) != 3 || byDevice[0].Device.ID != 7 || byDevice[0].MACAddress == nil {
		t.Fatalf("device_id=7: %d interfaces", len(byDevice))
	}
	mac := *byDevice[1].MACAddress
	cases := []struct {
		target  string
		wantIDs []int
	}{
		{InterfacesPath + "?device_id=7&device_id=8", []int{19, 20, 21, 22, 23, 24}},
		{InterfacesPath + "?mac_address=" + mac, []int{byDevice[1].ID}},
		{InterfacesPath + "?mac_address=00:11:22:33:44:55", nil},
		{InterfacesPath + "?device_id=7&id=20&id=25", []int{20}},
		{MACAddressesPath + "?device_id=7", []int{13, 14}},
		{MACAddressesPath + "?mac_address=" + mac, []int{14}},
		{MACAddressesPath + "?interface_id=20", []int{14}},
		{MACAddressesPath + "?assigned_object_id=21", nil}, // lo0 has no MAC
	}
	if d7.Name != nil {
		cases = append(cases, struct {
			target  string
			wantIDs []int
		}{InterfacesPath + "?device=" + *d7.Name, []int{19, 20, 21}})
	}
	for _, tc := range cases {
		got, _ := c.fetchAll(t, tc.target)
		if ids := slices.Sorted(slices.Values(idsOf(t, got))); !slices.Equal(ids, tc.wantIDs) && len(ids)+len(tc.wantIDs) > 0 {
			t.Errorf("%s: ids %v, want %v", tc.target, ids, tc.wantIDs)
		}
	}
	if rep := must(c.get(context.Background(), InterfacesPath+"?device_id=0")); rep.status != 400 {
		t.Errorf("device_id=0: %d, want 400", rep.status)
	}
}
