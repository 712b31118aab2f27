package netboxemu

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// The tests of this file check the shapes production NetBox has and that
// the clients must cope with (issue 20).

// TestRealMACsAndRouterPairs: interface MACs carry their manufacturer's
// real OUI (globally administered), and router pairs share a first-hop
// redundancy MAC that the mac_address filter finds on both.
func TestRealMACsAndRouterPairs(t *testing.T) {
	s, c := start(t, Options{Seed: 5, Devices: 600})
	macs := decodeAll[MACAddress](t, must0(c.fetchAll(t, MACAddressesPath+"?limit=1000")))
	byMAC := map[string][]int{}
	for _, m := range macs {
		byMAC[m.MACAddress] = append(byMAC[m.MACAddress], m.AssignedObject.Device.ID)
		raw := strings.ReplaceAll(m.MACAddress, ":", "")
		switch {
		case results.VirtualMAC(raw):
		case !slices.Contains(ouis, [3]byte{hexByte(raw[0:2]), hexByte(raw[2:4]), hexByte(raw[4:6])}) || results.LocallyAdministered(raw):
			t.Fatalf("MAC %s is not under a manufacturer's OUI", m.MACAddress)
		}
	}
	pairs := 0
	for mac, devs := range byMAC {
		if !results.VirtualMAC(strings.ReplaceAll(mac, ":", "")) {
			if len(devs) != 1 {
				t.Fatalf("physical MAC %s on devices %v", mac, devs)
			}
			continue
		}
		if len(devs)%2 != 0 {
			t.Fatalf("virtual MAC %s on %v: not pairs", mac, devs)
		}
		pairs += len(devs) / 2
		found := decodeAll[MACAddress](t, must0(c.fetchAll(t, MACAddressesPath+"?mac_address="+mac)))
		if len(found) != len(devs) {
			t.Fatalf("mac_address=%s finds %d objects, want %d", mac, len(found), len(devs))
		}
		for _, id := range devs {
			d, _ := s.Device(id, c.base)
			if d.Role.Slug != "router" {
				t.Fatalf("device %d with virtual MAC %s is a %s", id, mac, d.Role.Slug)
			}
		}
	}
	if pairs < 5 {
		t.Fatalf("%d router pairs", pairs)
	}
}

func hexByte(s string) byte {
	v, _ := strconv.ParseUint(s, 16, 8)
	return byte(v)
}

// TestAddressesOnInterfaces: every address is assigned to an interface;
// some devices have addresses but no primary IP, routers and others have
// loopbacks; the device_id filter ignores unknown ids, as NetBox's does.
func TestAddressesOnInterfaces(t *testing.T) {
	const n = 500
	s, c := start(t, Options{Seed: 6, Devices: n})
	ips := decodeAll[IPAddress](t, must0(c.fetchAll(t, IPAddressesPath+"?limit=1000")))
	perDevice := map[int][]IPAddress{}
	for _, ip := range ips {
		if ip.AssignedObjectType != "dcim.interface" || ip.AssignedObject.Device == nil {
			t.Fatalf("IP %s assigned to %s", ip.Address, ip.AssignedObjectType)
		}
		perDevice[ip.AssignedObject.Device.ID] = append(perDevice[ip.AssignedObject.Device.ID], ip)
	}
	var interfaceOnly, loopbacks int
	for id := 1; id <= n; id++ {
		d, _ := s.Device(id, c.base)
		for _, p := range []*IPRef{d.PrimaryIP4, d.PrimaryIP6} {
			if p != nil && !slices.ContainsFunc(perDevice[id], func(ip IPAddress) bool { return ip.ID == p.ID && ip.Address == p.Address }) {
				t.Fatalf("device %d: primary %s is not among its addresses", id, p.Address)
			}
		}
		if d.PrimaryIP == nil && len(perDevice[id]) > 0 {
			interfaceOnly++
		}
		if slices.ContainsFunc(perDevice[id], func(ip IPAddress) bool { return ip.Role != nil && ip.Role.Value == "loopback" }) {
			loopbacks++
		}
	}
	if interfaceOnly == 0 || loopbacks == 0 {
		t.Fatalf("%d devices with interface addresses only, %d with loopbacks", interfaceOnly, loopbacks)
	}
	got := idsOf(t, must0(c.fetchAll(t, IPAddressesPath+"?device_id=7&device_id=99999")))
	var want []int
	for _, ip := range perDevice[7] {
		want = append(want, ip.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("device_id=7&device_id=99999: %v, want %v", got, want)
	}
}

// TestVirtualMachines: VMs with their interfaces, MACs (VMware's OUI, a
// virtual_machine on the assigned interface) and addresses; no VM is in
// inventory status.
func TestVirtualMachines(t *testing.T) {
	const n, v = 30, 120
	_, c := start(t, Options{Seed: 7, Devices: n, VirtualMachines: v})
	vms := decodeAll[VirtualMachine](t, must0(c.fetchAll(t, VirtualMachinesPath+"?limit=50")))
	if len(vms) != v {
		t.Fatalf("%d VMs, want %d", len(vms), v)
	}
	statuses := map[string]bool{}
	for _, vm := range vms {
		statuses[vm.Status.Value] = true
	}
	if statuses["inventory"] || len(statuses) < 4 {
		t.Fatalf("VM statuses %v", statuses)
	}
	ifaces := decodeAll[VMInterface](t, must0(c.fetchAll(t, VMInterfacesPath+"?virtual_machine_id=3&virtual_machine_id=4")))
	if len(ifaces) != 2 || ifaces[0].VirtualMachine.ID != 3 || !strings.HasPrefix(*ifaces[0].MACAddress, "00:50:56:") {
		t.Fatalf("interfaces of VMs 3 and 4: %+v", ifaces)
	}
	macs := decodeAll[MACAddress](t, must0(c.fetchAll(t, MACAddressesPath+"?virtual_machine_id=3")))
	if len(macs) != 1 || macs[0].AssignedObjectType != "virtualization.vminterface" || macs[0].AssignedObject.VirtualMachine == nil ||
		macs[0].AssignedObject.VirtualMachine.ID != 3 || macs[0].MACAddress != *ifaces[0].MACAddress {
		t.Fatalf("MACs of VM 3: %+v", macs)
	}
	ips := decodeAll[IPAddress](t, must0(c.fetchAll(t, IPAddressesPath+"?virtual_machine_id=3")))
	for _, ip := range ips {
		if ip.AssignedObject.VirtualMachine == nil || ip.AssignedObject.VirtualMachine.ID != 3 {
			t.Fatalf("address %s of VM 3 assigned to %+v", ip.Address, ip.AssignedObject)
		}
	}
}

// TestEveryStatus: devices take every NetBox status.
func TestEveryStatus(t *testing.T) {
	s, _ := start(t, Options{Seed: 8, Devices: 1000})
	for _, st := range statuses {
		if ids, err := s.MatchingDeviceIDs("status=" + st.value); err != nil || len(ids) == 0 {
			t.Errorf("status %s: %d devices (%v)", st.value, len(ids), err)
		}
	}
}

// TestUnknownIDsPerEndpoint: NetBox's interface lists refuse an unknown
// device or VM id with a 400 (a model choice filter), its MAC and IP
// address lists ignore it (number filters).
func TestUnknownIDsPerEndpoint(t *testing.T) {
	s, c := start(t, Options{Seed: 9, Devices: 20, VirtualMachines: 5})
	s.DeleteDevices(4)
	for _, tc := range []struct {
		target string
		status int
	}{
		{InterfacesPath + "?device_id=4", http.StatusBadRequest},
		{InterfacesPath + "?device_id=3&device_id=21", http.StatusBadRequest},
		{VMInterfacesPath + "?virtual_machine_id=6", http.StatusBadRequest},
		{MACAddressesPath + "?device_id=4&device_id=21", http.StatusOK},
		{MACAddressesPath + "?virtual_machine_id=6", http.StatusOK},
		{IPAddressesPath + "?device_id=4&virtual_machine_id=6", http.StatusOK},
	} {
		rep := must(c.get(context.Background(), tc.target))
		if rep.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.target, rep.status, rep.body, tc.status)
		}
		if p, err := decodePage(rep); tc.status == http.StatusOK && (err != nil || len(p.Results) != 0) {
			t.Errorf("%s: %v, %d results for unknown ids", tc.target, err, len(p.Results))
		}
	}
}

// TestEditsBetweenPages: limit/offset pages follow names (NetBox's device
// ordering), so deleting a device already read shifts one past the next
// page; cursor pages follow ids and skip nothing.
func TestEditsBetweenPages(t *testing.T) {
	for _, cursor := range []bool{false, true} {
		t.Run("cursor="+strconv.FormatBool(cursor), func(t *testing.T) {
			s, c := start(t, Options{Seed: 10, Devices: 200})
			target := DevicesPath + "?fields=id,name&limit=50"
			if cursor {
				target += "&start=0"
			}
			p, err := decodePage(must(c.get(context.Background(), target)))
			if err != nil {
				t.Fatal(err)
			}
			first := idsOf(t, p.Results)
			if !cursor {
				names := decodeAll[struct{ Name *string }](t, p.Results)
				if !slices.IsSortedFunc(names, func(a, b struct{ Name *string }) int {
					return strings.Compare(naturalize(*a.Name), naturalize(*b.Name))
				}) {
					t.Fatal("offset page not in name order")
				}
			}
			s.DeleteDevices(first[0])
			s.RenameDevice(first[1], "zzz-renamed")
			rest, pages := c.fetchAll(t, *p.Next)
			seen := map[int]bool{}
			for _, id := range append(first, idsOf(t, rest)...) {
				seen[id] = true
			}
			missed := 0
			for id := 1; id <= 200; id++ {
				if _, exists := s.Device(id, c.base); exists && !seen[id] {
					missed++
				}
			}
			if cursor != (missed == 0) {
				t.Fatalf("missed %d devices with cursor %v", missed, cursor)
			}
			if !cursor && (p.Count == nil || *pages[0].Count != *p.Count-1) {
				t.Fatalf("count %v then %v, want one less", p.Count, pages[0].Count)
			}
		})
	}
}

// TestPathPrefix: behind a proxy that strips /netbox, NetBox's links lack
// the prefix; requests without it are not NetBox's.
func TestPathPrefix(t *testing.T) {
	s, c := start(t, Options{Seed: 11, Devices: 120, PathPrefix: "/netbox"})
	p, err := decodePage(must(c.get(context.Background(), "/netbox"+DevicesPath+"?limit=50")))
	if err != nil {
		t.Fatal(err)
	}
	if p.Next == nil || !strings.HasPrefix(*p.Next, c.base+DevicesPath) {
		t.Fatalf("next %v, want a link without the prefix", p.Next)
	}
	if rep := must(c.get(context.Background(), *p.Next)); rep.status != http.StatusNotFound {
		t.Fatalf("the link as NetBox wrote it: %d, want 404 from the proxy", rep.status)
	}
	if s.Stats().NotFound != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

// TestConfigContextCost: NetBox renders config contexts unless a list is
// brief or excludes them, fields= notwithstanding.
func TestConfigContextCost(t *testing.T) {
	s, c := start(t, Options{Seed: 12, Devices: 30})
	for _, tc := range []struct {
		query string
		cost  int64
	}{
		{"fields=id,name", 30},
		{"exclude=config_context", 0},
		{"fields=id&exclude=config_context", 0},
		{"brief=true", 0},
	} {
		before := s.Stats().ConfigContexts
		must0(c.fetchAll(t, DevicesPath+"?limit=100&"+tc.query))
		if got := s.Stats().ConfigContexts - before; got != tc.cost {
			t.Errorf("%s: %d config contexts, want %d", tc.query, got, tc.cost)
		}
	}
}

// TestOverlapSharesDevices: with an Overlap, the shared ordinals carry the
// population's shared MAC, addresses and name, as the Faker and the Armis
// emulator report them.
func TestOverlapSharesDevices(t *testing.T) {
	o := population.Overlap{Seed: 77, Percent: 30}
	s, c := start(t, Options{Seed: 13, Devices: 100, Overlap: o})
	shared := 0
	for i := range 100 {
		d, _ := s.Device(i+1, c.base)
		if !o.Shared(i) {
			continue
		}
		shared++
		want := o.Device(i)
		ifaces := decodeAll[Interface](t, must0(c.fetchAll(t, InterfacesPath+"?device_id="+strconv.Itoa(i+1))))
		if *d.Name != want.Hostname || netip.MustParsePrefix(d.PrimaryIP4.Address).Addr() != want.IPv4 ||
			netip.MustParsePrefix(d.PrimaryIP6.Address).Addr() != want.IPv6 || *ifaces[0].MACAddress != want.MAC.String() {
			t.Fatalf("shared device %d: %s %s %s %s, want %+v", i+1, *d.Name, d.PrimaryIP4.Address, d.PrimaryIP6.Address, *ifaces[0].MACAddress, want)
		}
		if got := decodeAll[Interface](t, must0(c.fetchAll(t, InterfacesPath+"?mac_address="+want.MAC.String()))); len(got) != 1 || got[0].Device.ID != i+1 {
			t.Fatalf("mac_address=%s finds %d interfaces", want.MAC, len(got))
		}
	}
	if shared != 30 {
		t.Fatalf("%d shared devices, want 30", shared)
	}
}
