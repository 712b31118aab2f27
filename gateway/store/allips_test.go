package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// TestEveryAddressFindsADevice runs on PostgreSQL: every address a source
// listed in all_ips finds its device as the primary IP does, with the same
// rules: only an update with no identifier is placed by an address, within
// its partition, and an address never merges two devices (DHCP moves). An
// update's primary IP finds the device whose ip it is, else the one device
// listing it (never one of two that list it, like a redundancy pair's
// virtual IP); its other addresses find a device whose ip they are; a
// link-local or loopback address, which many devices have, places nothing.
func TestEveryAddressFindsADevice(t *testing.T) {
	const otherSource = "0b5f5f6e-8f7d-4c59-9d7e-3c3a3c0f0002"
	type step struct {
		integration, source, partition string
		devices                        []store.Device
	}
	router := func(id, ip, all string) store.Device {
		return store.Device{DeviceID: id, IP: ip, Hostname: "router-" + id, Metadata: map[string]string{"all_ips": all}}
	}
	// legacy is an update that carries no identifier, as ServiceRadar's own
	// sync sends them: only addresses.
	legacy := func(ip, all string) store.Device {
		d := store.Device{IP: ip, Name: "legacy", Metadata: map[string]string{}}
		if all != "" {
			d.Metadata["all_ips"] = all
		}
		return d
	}
	// owner is the condition that the device the legacy update reached holds an identifier.
	owner := func(value string) string {
		return "name = 'legacy' AND uid IN (SELECT device_uid FROM tenant_acme.device_identifiers WHERE identifier_value = '" + value + "')"
	}
	for _, tc := range []struct {
		name    string
		steps   []step
		devices int
		// check is a condition exactly one device meets afterwards.
		check string
	}{
		{"an interface address of one source's device is found by another source", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.20.0.5")}},
			{"sync", otherSource, "", []store.Device{legacy("10.20.0.5", "")}},
		}, 1, owner("1") + " AND uid IN (SELECT device_uid FROM tenant_acme.source_devices GROUP BY device_uid HAVING count(*) = 2)"},
		{"an update's other address finds a device by its ip", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "")}},
			{"sync", otherSource, "", []store.Device{legacy("192.0.2.7", "192.0.2.7,10.0.0.1")}},
		}, 1, owner("1")},
		{"addresses of an update spread over two devices merge nothing", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.0.0.11"), router("2", "10.0.0.2", "10.0.0.2,10.0.0.12")}},
			{"sync", otherSource, "", []store.Device{legacy("10.0.0.12", "10.0.0.12,10.0.0.11")}},
		}, 2, owner("2")},
		{"an address that moved finds the device whose ip it is now", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.0.0.7")}},
			{"armis", otherSource, "", []store.Device{{DeviceID: "9", IP: "10.0.0.7"}}},
			{"sync", otherSource, "", []store.Device{legacy("10.0.0.7", "")}},
		}, 2, owner("9")},
		{"an update with an identifier is never joined by an address", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.20.0.5")}},
			{"armis", otherSource, "", []store.Device{{DeviceID: "7", IP: "10.20.0.5", Metadata: map[string]string{"all_ips": "10.20.0.5,10.0.0.1"}}}},
		}, 2, "ip = '10.20.0.5'"},
		{"an address moving between two devices of one source merges nothing", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.0.0.9"), router("2", "10.0.0.2", "10.0.0.2")}},
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1"), router("2", "10.0.0.2", "10.0.0.2,10.0.0.9")}},
		}, 2, "other_ips = '{10.0.0.9}'"},
		{"an address two devices list finds neither", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.0.0.254"), router("2", "10.0.0.2", "10.0.0.2,10.0.0.254")}},
			{"sync", otherSource, "", []store.Device{legacy("10.0.0.254", "")}},
		}, 3, "name = 'legacy' AND ip = '10.0.0.254'"},
		{"two updates that share only a virtual IP stay two devices", []step{
			{"sync", otherSource, "", []store.Device{legacy("10.0.0.1", "10.0.0.1,10.0.0.254")}},
			{"sync", otherSource, "", []store.Device{legacy("10.0.0.2", "10.0.0.2,10.0.0.254")}},
		}, 2, "name = 'legacy' AND ip = '10.0.0.2'"},
		{"a link-local address many devices list finds none of them", []step{
			{"netbox", srcUID, "", []store.Device{router("1", "10.0.0.1", "10.0.0.1,fe80::1")}},
			{"sync", otherSource, "", []store.Device{legacy("192.0.2.9", "192.0.2.9,fe80::1")}},
		}, 2, "name = 'legacy' AND ip = '192.0.2.9'"},
		{"an address finds no device of another partition", []step{
			{"netbox", srcUID, "dmz", []store.Device{router("1", "10.0.0.1", "10.0.0.1,10.20.0.5")}},
			{"sync", otherSource, "", []store.Device{legacy("10.20.0.5", "")}},
		}, 2, "name = 'legacy' AND partition = 'default'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for _, st := range tc.steps {
				partition := st.partition
				if partition == "" {
					partition = "default"
				}
				if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: partition, Integration: st.integration,
					SourceUID: st.source, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: st.devices}); err != nil {
					t.Fatal(err)
				}
			}
			if got := count(t, s, "acme", ""); got != tc.devices {
				t.Fatalf("%d devices, want %d", got, tc.devices)
			}
			var merges int
			if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.merge_audit").Scan(&merges); err != nil || merges != 0 {
				t.Fatalf("%d merges (%v): an address merged devices", merges, err)
			}
			if got := count(t, s, "acme", tc.check); got != 1 {
				t.Fatalf("%d devices where %s, want 1", got, tc.check)
			}
		})
	}
}

// TestSweepReachesEveryAddress runs on PostgreSQL: an agent's sweep result
// for an address a device lists in all_ips reaches that device, as one for
// its ip does; such an address answering makes the device available, and
// only its ip not answering makes it unavailable. An address two devices
// list (a virtual IP) or a link-local one reaches no device by all_ips.
func TestSweepReachesEveryAddress(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// before is the device's availability as its source reported it.
		before          bool
		hosts           []store.Swept
		matched         int
		available, seen bool
	}{
		{"an interface address answering", false, []store.Swept{{IP: "100.64.0.1", Available: true}, {IP: "192.0.2.1"}}, 1, true, true},
		{"an interface address silent, the ip answering", false, []store.Swept{{IP: "100.64.0.1"}, {IP: "10.0.0.1", Available: true}}, 2, true, true},
		{"an interface address silent alone", true, []store.Swept{{IP: "100.64.0.1"}}, 1, true, false},
		{"the ip silent", true, []store.Swept{{IP: "10.0.0.1"}}, 1, false, false},
		{"a link-local address many devices list answering", false, []store.Swept{{IP: "fe80::1", Available: true}}, 0, false, false},
		{"a virtual IP another device lists too answering", false, []store.Swept{{IP: "10.0.0.254", Available: true}}, 0, false, false},
		{"another device's ip answering", false, []store.Swept{{IP: "10.0.0.3", Available: true}}, 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if _, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "netbox",
				SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{
					{DeviceID: "1", IP: "10.0.0.1", IsAvailable: &tc.before, Metadata: map[string]string{"all_ips": "10.0.0.1,100.64.0.1,fe80::1,10.0.0.254,10.0.0.3"}},
					{DeviceID: "2", IP: "10.0.0.2", IsAvailable: &tc.before, Metadata: map[string]string{"all_ips": "10.0.0.2,10.0.0.254"}},
					{DeviceID: "3", IP: "10.0.0.3", IsAvailable: &tc.before},
				}}); err != nil {
				t.Fatal(err)
			}
			var before time.Time
			if err := s.Pool().QueryRow(ctx, "SELECT last_seen FROM tenant_acme.ocsf_devices WHERE ip = '10.0.0.1'").Scan(&before); err != nil {
				t.Fatal(err)
			}
			got, err := s.ApplySweep(ctx, "acme", "default", tc.hosts, before.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if got.Matched != tc.matched || got.Unknown != len(tc.hosts)-tc.matched {
				t.Fatalf("sweep %+v, want %d matched", got, tc.matched)
			}
			var available bool
			var last time.Time
			if err := s.Pool().QueryRow(ctx, "SELECT is_available, last_seen FROM tenant_acme.ocsf_devices WHERE ip = '10.0.0.1'").Scan(&available, &last); err != nil {
				t.Fatal(err)
			}
			if available != tc.available || last.After(before) != tc.seen {
				t.Fatalf("available %v, last_seen moved %v; want %v, %v", available, last.After(before), tc.available, tc.seen)
			}
		})
	}
}
