package netbox

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// The tests of this file run the client against an emulator that behaves
// like production NetBox in the respect each checks (issue 20, items 1-8).

// byID indexes emitted updates by their id metadata key.
func byID(t *testing.T, devs []results.DeviceUpdate, key string) map[int]results.DeviceUpdate {
	t.Helper()
	out := map[int]results.DeviceUpdate{}
	for _, d := range devs {
		raw, ok := d.Metadata[key]
		if !ok {
			continue
		}
		id, err := strconv.Atoi(raw)
		if err != nil {
			t.Fatalf("%s %q", key, raw)
		}
		if _, dup := out[id]; dup {
			t.Fatalf("%s %d emitted twice", key, id)
		}
		out[id] = d
	}
	return out
}

func host(prefix string) string { return netip.MustParsePrefix(prefix).Addr().String() }

// ownerAddresses reads every IP address of the emulator, by owner id, in
// the emulator's order.
func ownerAddresses(t *testing.T, s *netboxemu.Server, base string) (devices, vms map[int][]string) {
	t.Helper()
	devices, vms = map[int][]string{}, map[int][]string{}
	for _, ip := range emuList[netboxemu.IPAddress](t, s, base, netboxemu.IPAddressesPath, "") {
		switch a := ip.AssignedObject; {
		case a.Device != nil:
			devices[a.Device.ID] = append(devices[a.Device.ID], host(ip.Address))
		case a.VirtualMachine != nil:
			vms[a.VirtualMachine.ID] = append(vms[a.VirtualMachine.ID], host(ip.Address))
		}
	}
	return devices, vms
}

// wantIPs is what all_ips must hold: the primaries, then the other
// interface addresses, IPv4 first.
func wantIPs(p4, p6 *netboxemu.IPRef, assigned []string) []string {
	var out []string
	for _, p := range []*netboxemu.IPRef{p4, p6} {
		if p != nil {
			out = append(out, host(p.Address))
		}
	}
	primaries := len(out)
	for _, a := range assigned {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out[primaries:], func(a, b string) int {
		return boolInt(strings.Contains(a, ":")) - boolInt(strings.Contains(b, ":"))
	})
	return out
}

// TestEveryInterfaceAddressIsReported (item 1): NetBox devices often have
// addresses on their interfaces and no primary IP; every address assigned
// to a device's interfaces is in all_ips, the primary (else the first
// interface address) is ip.
func TestEveryInterfaceAddressIsReported(t *testing.T) {
	const n = 400
	s, base := startEmu(t, netboxemu.Options{Seed: 7, Devices: n})
	c, _ := newTestClient(t, base, s.V2Token(), func(src *bundle.Source) { src.PageSize = 150 })
	var got collector
	if err := c.Fetch(t.Context(), got.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	assigned, _ := ownerAddresses(t, s, base)
	devs := byID(t, got.devices(), MetaDeviceID)
	if len(devs) != n {
		t.Fatalf("emitted %d devices, want %d", len(devs), n)
	}
	var interfaceOnly, loopbacks, none int
	for id, d := range devs {
		nb, _ := s.Device(id, base)
		want := wantIPs(nb.PrimaryIP4, nb.PrimaryIP6, assigned[id])
		if got := d.Metadata[integration.MetaAllIPs]; got != strings.Join(want, ",") {
			t.Errorf("device %d: all_ips %q, want %q", id, got, strings.Join(want, ","))
		}
		wantIP := ""
		if len(want) > 0 {
			wantIP = want[0]
		}
		if d.IP != wantIP {
			t.Errorf("device %d: ip %q, want %q", id, d.IP, wantIP)
		}
		switch {
		case len(want) == 0:
			none++
		case nb.PrimaryIP == nil:
			interfaceOnly++
		}
		if len(want) > 1 && strings.HasPrefix(want[len(want)-1], "100.64.") || slices.ContainsFunc(want, func(a string) bool { return strings.HasPrefix(a, "100.64.") }) {
			loopbacks++
		}
	}
	if interfaceOnly == 0 || loopbacks == 0 || none == 0 {
		t.Fatalf("inventory lacks a case: %d with interface addresses only, %d with loopbacks, %d without any", interfaceOnly, loopbacks, none)
	}
}

// TestVirtualMachinesAreDevices (item 2): NetBox's virtual machines become
// devices identified by netbox_vm_id, with their interfaces' MACs and
// addresses, unless the source excludes them.
func TestVirtualMachinesAreDevices(t *testing.T) {
	const devices, vms = 60, 180
	s, base := startEmu(t, netboxemu.Options{Seed: 8, Devices: devices, VirtualMachines: vms})
	_, assigned := ownerAddresses(t, s, base)
	vmList := emuList[netboxemu.VirtualMachine](t, s, base, netboxemu.VirtualMachinesPath, "")
	for _, exclude := range []bool{false, true} {
		t.Run("exclude="+strconv.FormatBool(exclude), func(t *testing.T) {
			before := s.Stats().VirtualMachinePages
			c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
				src.PageSize = 70
				src.NetBox.ExcludeVirtualMachines = exclude
			})
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			all := got.devices()
			vmUpdates := byID(t, all, MetaVMID)
			if n := len(byID(t, all, MetaDeviceID)); n != devices || n+len(vmUpdates) != len(all) {
				t.Fatalf("%d device updates of %d, want %d", n, len(all), devices)
			}
			if exclude {
				if len(vmUpdates) != 0 || s.Stats().VirtualMachinePages != before {
					t.Fatalf("%d VM updates and %d VM pages with VMs excluded", len(vmUpdates), s.Stats().VirtualMachinePages-before)
				}
				return
			}
			if len(vmUpdates) != vms {
				t.Fatalf("emitted %d virtual machines, want %d", len(vmUpdates), vms)
			}
			for _, vm := range vmList {
				d := vmUpdates[vm.ID]
				want := wantIPs(vm.PrimaryIP4, vm.PrimaryIP6, assigned[vm.ID])
				switch {
				case d.Hostname != vm.Name:
					t.Errorf("VM %d: hostname %q, want %q", vm.ID, d.Hostname, vm.Name)
				case !strings.HasPrefix(d.MAC, "00:50:56:") || results.NormalizeMAC(d.MAC) == "":
					t.Errorf("VM %d: mac %q, want its VMware MAC", vm.ID, d.MAC)
				case d.Metadata[integration.MetaAllIPs] != strings.Join(want, ","):
					t.Errorf("VM %d: all_ips %q, want %q", vm.ID, d.Metadata[integration.MetaAllIPs], strings.Join(want, ","))
				case d.Metadata[MetaDeviceID] != "" || d.Metadata["status"] != vm.Status.Value:
					t.Errorf("VM %d: metadata %v", vm.ID, d.Metadata)
				}
			}
		})
	}
}

// TestRouterPairsKeepTheirOwnMAC (item 3): router pairs share a
// first-hop redundancy MAC (HSRP, VRRP, GLBP) on eth0 beside their own, and
// NetBox 4.2+ lists an interface's MACs by address, the virtual one first.
// A device's MAC is its interfaces' primary MAC, never the virtual one, on
// NetBox 4.2+ and before (where an interface has only mac_address).
func TestRouterPairsKeepTheirOwnMAC(t *testing.T) {
	const n = 500
	s, base := startEmu(t, netboxemu.Options{Seed: 3, Devices: n})
	ifaces := emuList[netboxemu.Interface](t, s, base, netboxemu.InterfacesPath, "")
	primary := map[int]string{}   // device id -> MAC of its first interface
	virtual := map[int]string{}   // device id -> shared MAC
	sharers := map[string][]int{} // virtual MAC -> devices
	for _, it := range ifaces {
		if it.PrimaryMACAddress != nil {
			if _, ok := primary[it.Device.ID]; !ok {
				primary[it.Device.ID] = it.PrimaryMACAddress.MACAddress
			}
		}
		for _, m := range it.MACAddresses {
			if it.PrimaryMACAddress == nil || m.MACAddress != it.PrimaryMACAddress.MACAddress {
				virtual[it.Device.ID] = m.MACAddress
				sharers[m.MACAddress] = append(sharers[m.MACAddress], it.Device.ID)
			}
		}
	}
	if len(virtual) < 4 {
		t.Fatalf("only %d devices carry a virtual MAC", len(virtual))
	}
	cases := []struct {
		name    string
		rewrite func(path string, objs []map[string]any)
	}{
		{name: "NetBox 4.2+"},
		{name: "NetBox before 4.2", rewrite: func(path string, objs []map[string]any) {
			if path == netboxemu.InterfacesPath {
				for _, o := range objs {
					delete(o, "primary_mac_address")
					delete(o, "mac_addresses")
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			front := proxied(t, s, nil, tc.rewrite)
			c, _ := newTestClient(t, front, s.V1Token(), func(src *bundle.Source) { src.PageSize = 200 })
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			devs := byID(t, got.devices(), MetaDeviceID)
			for id, d := range devs {
				if d.MAC != primary[id] {
					t.Errorf("device %d: mac %q, want its own %q", id, d.MAC, primary[id])
				}
				if v, ok := virtual[id]; ok && tc.rewrite == nil && !strings.Contains(d.Metadata[integration.MetaAllMACs], v) {
					t.Errorf("device %d: all_macs %q lacks the shared %s", id, d.Metadata[integration.MetaAllMACs], v)
				}
			}
			for v, ids := range sharers {
				if len(ids) > 1 && devs[ids[0]].MAC == devs[ids[1]].MAC {
					t.Errorf("devices %v sharing %s report the same MAC %s", ids, v, devs[ids[0]].MAC)
				}
			}
		})
	}
}

// TestStatusAvailability (item 4): every NetBox status maps to
// availability by the default table, which a source overrides per status;
// decommissioning devices are not reported, so a full pass retracts them.
func TestStatusAvailability(t *testing.T) {
	const n = 700
	s, base := startEmu(t, netboxemu.Options{Seed: 12, Devices: n})
	yes, no := ptr(true), ptr(false)
	cases := []struct {
		name     string
		settings *bundle.NetBox
		want     map[string]*bool // status -> is_available; absent: not reported
	}{
		{name: "default table", want: map[string]*bool{"active": yes, "offline": no, "planned": no, "staged": nil,
			"failed": no, "inventory": no}},
		{name: "overridden", settings: &bundle.NetBox{StatusAvailability: map[string]string{
			"staged": "Available", "offline": "unknown", "decommissioning": "Unavailable", "inventory": "Retract"}},
			want: map[string]*bool{"active": yes, "offline": nil, "planned": no, "staged": yes, "failed": no, "decommissioning": no}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.NetBox = tc.settings })
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			devs := byID(t, got.devices(), MetaDeviceID)
			seen := map[string]int{}
			for id := 1; id <= n; id++ {
				nb, _ := s.Device(id, base)
				status := nb.Status.Value
				seen[status]++
				want, reported := tc.want[status]
				d, emitted := devs[id]
				switch {
				case reported != emitted:
					t.Errorf("device %d (%s): emitted %v, want %v", id, status, emitted, reported)
				case emitted && (want == nil) != (d.IsAvailable == nil):
					t.Errorf("device %d (%s): is_available %v, want %v", id, status, d.IsAvailable, want)
				case emitted && want != nil && *want != *d.IsAvailable:
					t.Errorf("device %d (%s): is_available %v, want %v", id, status, *d.IsAvailable, *want)
				}
			}
			if len(seen) != len(DefaultStatusAvailability) {
				t.Fatalf("inventory has statuses %v, want every one", seen)
			}
		})
	}
	_, err := New(integration.Config{Source: bundle.Source{Endpoint: base, Credentials: map[string]string{CredentialAPIToken: s.V1Token()},
		NetBox: &bundle.NetBox{StatusAvailability: map[string]string{"active": "Perhaps"}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "netbox.statusAvailability") {
		t.Errorf("New with an unknown availability: %v", err)
	}
}

// TestSeenTimeIsTheRunTime (item 5): a device is seen when the run reads
// it, not when it was last edited (years ago, often); last_updated stays in
// metadata.
func TestSeenTimeIsTheRunTime(t *testing.T) {
	s, base := startEmu(t, netboxemu.Options{Seed: 5, Devices: 90, VirtualMachines: 10})
	now := time.Date(2026, 12, 3, 4, 5, 6, 7000, time.UTC)
	c, _ := newTestClient(t, base, s.V1Token(), nil)
	c.now = func() time.Time { return now }
	var got collector
	if err := c.Fetch(t.Context(), got.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for id, d := range byID(t, got.devices(), MetaDeviceID) {
		nb, _ := s.Device(id, base)
		if d.Timestamp != now.Format(time.RFC3339Nano) || d.Metadata["last_updated"] != nb.LastUpdated {
			t.Fatalf("device %d: timestamp %q, last_updated %q; want the run's %v and %q", id, d.Timestamp, d.Metadata["last_updated"], now, nb.LastUpdated)
		}
	}
}

// TestVanishedDevices (item 6): devices deleted or renamed while a run
// pages. NetBox answers an interface lookup naming a deleted device with a
// 400; limit/offset pages (before NetBox 4.6) follow names, so a deletion
// on a page already read shifts a device past the next page's start. The
// run tolerates vanished ids, pages by cursor where NetBox has it, and
// never calls a pass full when the list's count changed under it.
func TestVanishedDevices(t *testing.T) {
	const n, pageSize = 300, 50
	cases := []struct {
		name     string
		noCursor bool
		// act edits the inventory: before is called for each request,
		// afterPage after each emitted page.
		before    func(s *netboxemu.Server, r *http.Request, once *sync.Once)
		afterPage func(s *netboxemu.Server, page int, devs []results.DeviceUpdate)
		wantErr   error
		// wantMissing is how many surviving devices the run may miss.
		wantMissing int
	}{
		{name: "deleted between its page and the interface lookup",
			before: func(s *netboxemu.Server, r *http.Request, once *sync.Once) {
				if r.URL.Path == netboxemu.InterfacesPath {
					once.Do(func() { s.DeleteDevices(3, 40) })
				}
			}},
		{name: "deleted and renamed between pages, cursor paging",
			afterPage: func(s *netboxemu.Server, page int, devs []results.DeviceUpdate) {
				if page == 1 {
					s.DeleteDevices(idOf(devs[0]), idOf(devs[1]), 290)
					s.RenameDevice(200, "aaa-first-by-name")
				}
			}},
		{name: "deleted between pages, offset paging before NetBox 4.6", noCursor: true,
			afterPage: func(s *netboxemu.Server, page int, devs []results.DeviceUpdate) {
				if page == 1 {
					s.DeleteDevices(idOf(devs[0]))
				}
			}, wantErr: errNotFull, wantMissing: 1},
		{name: "renamed between pages, offset paging before NetBox 4.6", noCursor: true,
			afterPage: func(s *netboxemu.Server, page int, devs []results.DeviceUpdate) {
				if page == 2 {
					s.RenameDevice(idOf(devs[0]), "zzz-last-by-name")
				}
			}, wantMissing: 1},
		{name: "nothing changes, offset paging before NetBox 4.6", noCursor: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := netboxemu.New(netboxemu.Options{Seed: 14, Devices: n, NoCursor: tc.noCursor})
			var once sync.Once
			front := proxied(t, s, func(r *http.Request) {
				if tc.before != nil {
					tc.before(s, r, &once)
				}
			}, nil)
			c, _ := newTestClient(t, front, s.V1Token(), func(src *bundle.Source) { src.PageSize = pageSize })
			var got collector
			got.hook = func(_ context.Context, page int) error {
				if tc.afterPage != nil {
					got.mu.Lock()
					devs := got.pages[page-1]
					got.mu.Unlock()
					tc.afterPage(s, page, devs)
				}
				return nil
			}
			err := c.Fetch(t.Context(), got.emit)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Fetch: %v, want %v", err, tc.wantErr)
			}
			emitted := byID(t, got.devices(), MetaDeviceID)
			missing := 0
			for id := 1; id <= n; id++ {
				_, exists := s.Device(id, "http://x")
				_, ok := emitted[id]
				switch {
				case exists && !ok:
					missing++
				case !exists && ok && tc.before != nil:
					t.Errorf("device %d, deleted before its lookup, was emitted", id)
				}
			}
			if missing != tc.wantMissing {
				t.Errorf("%d surviving devices missed, want %d", missing, tc.wantMissing)
			}
		})
	}
}

func idOf(d results.DeviceUpdate) int {
	id, _ := strconv.Atoi(d.Metadata[MetaDeviceID])
	return id
}

// TestPathPrefixIsKept (item 7): behind a proxy that serves NetBox under a
// path prefix NetBox does not know, its next links lack the prefix; the
// client keeps the endpoint's.
func TestPathPrefixIsKept(t *testing.T) {
	for _, noCursor := range []bool{false, true} {
		t.Run("noCursor="+strconv.FormatBool(noCursor), func(t *testing.T) {
			const n = 230
			s, base := startEmu(t, netboxemu.Options{Seed: 2, Devices: n, VirtualMachines: 75, PathPrefix: "/netbox", NoCursor: noCursor})
			c, _ := newTestClient(t, base+"/netbox/", s.V1Token(), func(src *bundle.Source) { src.PageSize = 50 })
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if d, v := len(byID(t, got.devices(), MetaDeviceID)), len(byID(t, got.devices(), MetaVMID)); d != n || v != 75 {
				t.Fatalf("emitted %d devices and %d VMs, want %d and 75", d, v, n)
			}
			if st := s.Stats(); st.NotFound != 0 {
				t.Fatalf("%d requests missed the prefix", st.NotFound)
			}
		})
	}
}

// TestPayloadAndMetadata (item 8): lists exclude config contexts (NetBox
// renders them even under fields=), and tenant, platform (as the OS),
// serial, tags and virtual chassis membership reach metadata; an unnamed
// chassis member is named <chassis>:<position>, as NetBox shows it.
func TestPayloadAndMetadata(t *testing.T) {
	const n = 400
	s, base := startEmu(t, netboxemu.Options{Seed: 9, Devices: n, VirtualMachines: 20})
	c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = 100 })
	var got collector
	if err := c.Fetch(t.Context(), got.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if st := s.Stats(); st.ConfigContexts != 0 {
		t.Errorf("NetBox rendered %d config contexts", st.ConfigContexts)
	}
	var members, unnamedMembers int
	for id, d := range byID(t, got.devices(), MetaDeviceID) {
		nb, _ := s.Device(id, base)
		want := map[string]string{"serial": nb.Serial}
		if nb.Tenant != nil {
			want["tenant"] = nb.Tenant.Slug
		}
		if nb.Platform != nil {
			want["os"], want["platform"] = nb.Platform.Name, nb.Platform.Slug
		}
		var tags []string
		for _, tg := range nb.Tags {
			tags = append(tags, tg.Slug)
		}
		want["tags"] = strings.Join(tags, ",")
		wantHost := ""
		if nb.Name != nil {
			wantHost = *nb.Name
		}
		if vc := nb.VirtualChassis; vc != nil {
			members++
			want["virtual_chassis"], want["vc_position"] = vc.Name, strconv.Itoa(*nb.VCPosition)
			if nb.Name == nil {
				unnamedMembers++
				wantHost = vc.Name + ":" + strconv.Itoa(*nb.VCPosition)
			}
		}
		for k, v := range want {
			if d.Metadata[k] != v {
				t.Errorf("device %d: %s %q, want %q", id, k, d.Metadata[k], v)
			}
		}
		if d.Hostname != wantHost {
			t.Errorf("device %d: hostname %q, want %q", id, d.Hostname, wantHost)
		}
	}
	if members == 0 || unnamedMembers == 0 {
		t.Fatalf("inventory has %d chassis members, %d unnamed", members, unnamedMembers)
	}
	if keys := slices.Collect(maps.Keys(DefaultStatusAvailability)); len(keys) != 7 {
		t.Fatalf("status table %v", keys)
	}
}
