package ingest

import (
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
)

// TestDeviceIdentityFromMetadata: a NetBox virtual machine is identified
// by its netbox_vm_id, apart from devices, and an update without ip takes
// the first of its all_ips.
func TestDeviceIdentityFromMetadata(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		in                   results.DeviceUpdate
		wantID, wantType, ip string
	}{
		{"a device", results.DeviceUpdate{IP: "10.0.0.1", Metadata: map[string]string{"netbox_device_id": "5"}}, "5", "", "10.0.0.1"},
		{"a virtual machine", results.DeviceUpdate{Metadata: map[string]string{"netbox_vm_id": "5", "all_ips": " 10.0.0.9 ,10.0.0.10"}},
			"5", "netbox_vm_id", "10.0.0.9"},
		{"another integration's vm id is no id", results.DeviceUpdate{Metadata: map[string]string{"armis_vm_id": "5"}}, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := device(tc.in, "netbox")
			if d.DeviceID != tc.wantID || d.DeviceIDType != tc.wantType || d.IP != tc.ip {
				t.Fatalf("device id %q type %q ip %q, want %q %q %q", d.DeviceID, d.DeviceIDType, d.IP, tc.wantID, tc.wantType, tc.ip)
			}
		})
	}
}
