package dire_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/dire"
	"github.com/serviceradar/sync-operator/wire/results"
)

func TestIdentifiersStrongestFirstAndQualified(t *testing.T) {
	ids := dire.Identifiers(dire.Update{Integration: "armis", DeviceID: "42", MACs: []string{"02:00:5e:10:00:01", "00:1b:44:11:3a:b7", "00-1B-44-11-3A-B7"}})
	want := []dire.Identifier{
		{Type: "armis_device_id", Value: "42", Rank: dire.RankArmis},
		{Type: dire.TypeMAC, Value: "001B44113AB7", Rank: dire.RankMAC},
		{Type: dire.TypeLocalMAC, Value: "02005E100001", Rank: dire.RankWeak},
	}
	if len(ids) != len(want) {
		t.Fatalf("identifiers %+v", ids)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("identifier %d = %+v, want %+v", i, ids[i], want[i])
		}
	}
	if ids[2].Confidence() != dire.ConfidenceMedium || ids[1].Confidence() != dire.ConfidenceHigh {
		t.Fatal("a locally administered MAC must be medium confidence")
	}
	for typ, rank := range map[string]int{"armis_device_id": dire.RankArmis, "netbox_device_id": dire.RankNetBox, "faker_device_id": dire.RankIntegration, "mac": dire.RankMAC, "mac_local": dire.RankWeak} {
		if got := dire.RankOf(typ); got != rank {
			t.Errorf("RankOf(%s) = %d, want %d", typ, got, rank)
		}
	}
}

func TestUIDsAreDeterministicPerTenantAndPartition(t *testing.T) {
	id := dire.Identifier{Type: "armis_device_id", Value: "42", Rank: dire.RankArmis}
	a := dire.UID("t1", "default", id)
	if a != dire.UID("t1", "default", id) {
		t.Fatal("uid is not deterministic")
	}
	if a == dire.UID("t2", "default", id) || a == dire.UID("t1", "dmz", id) {
		t.Fatal("uid does not depend on tenant and partition")
	}
	plan := dire.Resolve("t1", "default", [][]dire.Identifier{{id}, {id}}, [][]string{{"10.0.0.1"}, {"10.0.0.2"}}, dire.Known{})
	if plan.UIDs[0] != a || plan.UIDs[1] != a {
		t.Fatalf("two updates with one id resolved to %v", plan.UIDs)
	}
}

// Two updates of one segment that reach the same existing device: one
// device when nothing tells them apart, and never one device with two ids
// of one integration.
func TestUpdatesReachingOneDevice(t *testing.T) {
	mac := func(v string) dire.Identifier {
		return dire.Identifier{Type: dire.TypeMAC, Value: v, Rank: dire.RankMAC}
	}
	netbox := func(v string) dire.Identifier {
		return dire.Identifier{Type: "netbox_device_id", Value: v, Rank: dire.RankNetBox}
	}
	known := dire.Known{
		Device:       map[dire.Key]string{{Type: dire.TypeMAC, Value: "A"}: "sr:x", {Type: dire.TypeMAC, Value: "B"}: "sr:x"},
		Integrations: map[string][]dire.Identifier{"sr:x": {{Type: "armis_device_id", Value: "1", Rank: dire.RankArmis}}},
	}
	for _, tc := range []struct {
		name string
		ids  [][]dire.Identifier
		want func(uids []string) bool
	}{
		{"different ids of one integration", [][]dire.Identifier{{netbox("7"), mac("A")}, {netbox("8"), mac("B")}},
			func(u []string) bool { return u[0] == "sr:x" && u[1] != "sr:x" && u[1] != "" }},
		{"different ids sharing a MAC", [][]dire.Identifier{{netbox("7"), mac("A")}, {netbox("8"), mac("A")}},
			func(u []string) bool { return u[0] == "sr:x" && u[1] != "sr:x" && u[1] != "" }},
		{"nothing tells them apart", [][]dire.Identifier{{netbox("7"), mac("A")}, {mac("B")}},
			func(u []string) bool { return u[0] == "sr:x" && u[1] == "sr:x" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := dire.Resolve("t1", "default", tc.ids, make([][]string, len(tc.ids)), known)
			if !tc.want(plan.UIDs) || len(plan.Merges) != 0 {
				t.Fatalf("resolved to %v, merges %v", plan.UIDs, plan.Merges)
			}
		})
	}
}

func TestVirtualMACsAreNoIdentifiers(t *testing.T) {
	for _, tc := range []struct {
		mac     string
		virtual bool
	}{
		{"00:00:0c:07:ac:01", true},  // HSRP v1
		{"00:00:0C:9F:F0:2A", true},  // HSRP v2
		{"00:05:73:a0:00:01", true},  // HSRP for IPv6
		{"00-00-5E-00-01-0A", true},  // VRRP for IPv4
		{"00:00:5e:00:02:0a", true},  // VRRP for IPv6
		{"0007.b400.0102", true},     // GLBP
		{"00:23:04:ee:be:0c", true},  // Cisco vPC peer-gateway
		{"00:1c:73:00:00:99", true},  // Arista VARP (documented)
		{"00:00:0c:12:34:56", false}, // a Cisco interface
		{"00:00:5e:00:53:01", false}, // IANA documentation range, not VRRP
		{"00:1c:73:00:00:98", false}, // an Arista interface
	} {
		raw := strings.ToUpper(strings.NewReplacer(":", "", "-", "", ".", "").Replace(tc.mac))
		if got := results.VirtualMAC(raw); got != tc.virtual {
			t.Errorf("VirtualMAC(%s) = %v, want %v", tc.mac, got, tc.virtual)
		}
		if got := results.NormalizeMAC(tc.mac); (got == "") != tc.virtual {
			t.Errorf("NormalizeMAC(%s) = %q: a virtual MAC is no device's MAC", tc.mac, got)
		}
	}
	ids := dire.Identifiers(dire.Update{Integration: "netbox", DeviceID: "5", DeviceIDType: "netbox_vm_id",
		MACs: []string{"00:00:0c:07:ac:01", "00:1a:a1:00:00:01"}})
	want := []dire.Identifier{{Type: "netbox_vm_id", Value: "5", Rank: dire.RankNetBox}, {Type: dire.TypeMAC, Value: "001AA1000001", Rank: dire.RankMAC}}
	if len(ids) != len(want) || ids[0] != want[0] || ids[1] != want[1] {
		t.Fatalf("identifiers %+v, want %+v", ids, want)
	}
	if dire.RankOf("netbox_vm_id") != dire.RankNetBox {
		t.Fatal("netbox_vm_id is not ranked as a NetBox id")
	}
	// Only the integration's own kinds qualify an id.
	if ids := dire.Identifiers(dire.Update{Integration: "netbox", DeviceID: "5", DeviceIDType: "armis_device_id"}); ids[0].Type != "netbox_device_id" {
		t.Fatalf("a foreign id type was taken: %+v", ids)
	}
}

func TestIPsPrimaryFirstWithoutRepeats(t *testing.T) {
	for _, tc := range []struct {
		ip, all string
		want    []string
	}{
		{"", "", nil},
		{"10.0.0.1", "", []string{"10.0.0.1"}},
		{"10.0.0.1", "10.0.0.2,10.0.0.1, 2001:db8::1 ,,", []string{"10.0.0.1", "10.0.0.2", "2001:db8::1"}},
		{"", "10.0.0.2,10.0.0.3", []string{"10.0.0.2", "10.0.0.3"}},
		{"10.0.0.1", strings.Repeat("10.0.0.1,10.0.0.2,", 40) + "10.0.0.3", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
	} {
		if got := dire.IPs(tc.ip, tc.all); !slices.Equal(got, tc.want) {
			t.Errorf("IPs(%q, %q) = %q, want %q", tc.ip, tc.all, got, tc.want)
		}
	}
	long := make([]string, 100)
	for i := range long {
		long[i] = fmt.Sprintf("10.1.0.%d", i)
	}
	if got := dire.IPs("", strings.Join(append(long, long...), ",")); !slices.Equal(got, long) {
		t.Errorf("a long all_ips listed twice gives %d addresses, want %d", len(got), len(long))
	}
}

// An update with no identifier is placed by its addresses: its primary IP
// finds a device whose ip it is, else the one that lists it; its other
// addresses then find a device whose ip they are. One whose addresses name
// several devices joins the first and merges none; one with an identifier
// is never placed by an address.
func TestAddressesPlaceOnlyUpdatesWithoutIdentifiers(t *testing.T) {
	known := dire.Known{ByIP: map[string]string{"10.0.0.5": "sr:a", "10.0.0.9": "sr:b"},
		ByOtherIP: map[string]string{"10.0.0.7": "sr:c", "10.0.0.5": "sr:x"}}
	local := dire.Identifier{Type: dire.TypeLocalMAC, Value: "02005E100001", Rank: dire.RankWeak}
	for _, tc := range []struct {
		name string
		ids  []dire.Identifier
		ips  []string
		want string
	}{
		{"a secondary address finds the device whose ip it is", nil, []string{"192.0.2.1", "10.0.0.5"}, "sr:a"},
		{"the primary address decides first", nil, []string{"10.0.0.9", "10.0.0.5"}, "sr:b"},
		{"a primary address finds the device that lists it", nil, []string{"10.0.0.7", "10.0.0.9"}, "sr:c"},
		{"a device whose ip it is wins over one that lists it", nil, []string{"10.0.0.5"}, "sr:a"},
		{"a secondary address a device lists finds nothing", nil, []string{"192.0.2.1", "10.0.0.7"}, dire.IPUID("t1", "default", "192.0.2.1")},
		{"no address known: a new device named by the primary", nil, []string{"192.0.2.1", "192.0.2.2"}, dire.IPUID("t1", "default", "192.0.2.1")},
		{"an identifier keeps addresses out", []dire.Identifier{local}, []string{"10.0.0.5"}, dire.UID("t1", "default", local)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := dire.Resolve("t1", "default", [][]dire.Identifier{tc.ids}, [][]string{tc.ips}, known)
			if plan.UIDs[0] != tc.want || len(plan.Merges) != 0 {
				t.Fatalf("resolved to %v, merges %v, want %s", plan.UIDs, plan.Merges, tc.want)
			}
		})
	}
}
