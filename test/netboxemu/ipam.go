package netboxemu

import (
	"fmt"
	"net/url"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// IP addresses: device ordinal i has the slots 3i..3i+2 (slotIP4, slotIP6,
// slotLoop), VM ordinal v the slots 3N+2v and 3N+2v+1; ids are ordinal+1.
// Only the slots an owner has exist. Every address is assigned to an
// interface: eth0, or the last interface (lo0) for a loopback.

// ipTotal is the size of the IP address ordinal space.
func (inv *inventory) ipTotal() int { return ipSlots*inv.n + 2*inv.vms }

// ipOwner takes IP ordinal k apart.
func (inv *inventory) ipOwner(k int) (a attrs, slot int, ok bool) {
	if k < 0 || k >= inv.ipTotal() {
		return attrs{}, 0, false
	}
	if k < ipSlots*inv.n {
		a, slot = inv.attrs(k/ipSlots), k%ipSlots
		return a, slot, !a.deleted && a.ipExists(slot)
	}
	k -= ipSlots * inv.n
	a, slot = inv.vmAttrs(k/2), k%2
	return a, slot, a.ipExists(slot)
}

// ipAddress renders IP ordinal k, which must exist.
func (inv *inventory) ipAddress(k int, u urls) IPAddress {
	a, slot, _ := inv.ipOwner(k)
	ref := inv.ipRef(u, &a, slot)
	iface := a.ord * inv.ifs
	if a.vm {
		iface = a.ord
	} else if slot == slotLoop {
		iface += inv.ifs - 1
	}
	typ, assigned := inv.assigned(&a, iface, a.vm, u)
	ip := IPAddress{
		ID: ref.ID, URL: ref.URL, DisplayURL: u.ui("ipam/ip-addresses", ref.ID), Display: ref.Display,
		Family: ref.Family, Address: ref.Address, Status: Choice{"active", "Active"},
		AssignedObjectType: typ, AssignedObjectID: iface + 1, AssignedObject: assigned,
		NATOutside: []any{}, DNSName: ref.DNSName, Tags: []TagRef{}, CustomFields: map[string]any{},
		Created: a.created.Format(timeLayout), LastUpdated: a.updated.Format(timeLayout),
	}
	if slot == slotLoop {
		ip.Role = &Choice{"loopback", "Loopback"}
	}
	return ip
}

// ipList selects IP addresses by device_id, device, virtual_machine_id (NetBox
// ignores unknown ids of all three), id and family.
func (s *Server) ipList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	all := func(int) bool { return true }
	devs, byDev := s.deviceOrdinals(q, false, errs)
	vms, byVM := ownerIDs(q, "virtual_machine_id", s.inv.vms, all, false, errs)
	if byDev || byVM {
		sel := ordinalSet{}
		for d := range devs {
			for slot := range ipSlots {
				sel[ipSlots*d+slot] = true
			}
		}
		for v := range vms {
			sel[ipSlots*s.inv.n+2*v], sel[ipSlots*s.inv.n+2*v+1] = true, true
		}
		set = set.intersect(sel)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, s.inv.ipTotal()))
	}
	family := q.Get("family")
	if family != "" && family != "4" && family != "6" {
		errs.add("family", invalidChoice(family))
	}
	exists := func(k int) bool {
		a, slot, ok := s.inv.ipOwner(k)
		if !ok || family == "" {
			return ok
		}
		return (family == "6") == s.inv.address(&a, slot).Addr().Is6()
	}
	l := list{render: func(k int, refs *refTable) any { return s.inv.ipAddress(k, refs.u) }}
	if set == nil && family == "" {
		l.view = s.results.Get(fmt.Sprintf("ips@%d", s.inv.mut.generation()), func() ordinals.List { return set.list(s.inv.ipTotal(), exists) })
	} else {
		l.view = set.list(s.inv.ipTotal(), exists)
	}
	return l
}
