package netboxemu

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// Interfaces: device ordinal i has interfaces i*K .. i*K+K-1 (K interfaces
// per device); the last is lo0 without a MAC when K > 1. Each virtual
// machine v has one interface, eth0, with id v+1 on its own endpoint.
//
// MAC address objects are numbered in three ranges of ordinals (id =
// ordinal+1): P = N*macsPerDevice physical MACs, m = i*macsPerDevice+port;
// then N slots for the virtual MAC of device i's router pair, which exist
// only for paired routers and sit on eth0 beside its own MAC; then one MAC
// per virtual machine. A physical MAC is its manufacturer's OUI and 24 bits
// that are an affine bijection of m (offset by the seed), so MACs are
// unique for up to 2^24 physical MACs and different seeds rarely share one.

// macMul is odd, so m -> m*macMul + off is a bijection modulo 2^24.
const macMul = 0x9E3779 | 1

const low24 = 1<<24 - 1

// macMulInverse is macMul's inverse modulo 2^24 (Newton's iteration).
var macMulInverse = func() uint32 {
	x := uint32(macMul)
	for range 5 {
		x *= 2 - macMul*x
	}
	return x & low24
}()

// macPlan is the seed's offset of the low 24 bits.
type macPlan struct{ off uint32 }

func (p macPlan) low(m int) uint32 { return (uint32(m)*macMul + p.off) & low24 }

func (p macPlan) ordinal(low uint32) int { return int(((low - p.off) * macMulInverse) & low24) }

func macText(oui [3]byte, low uint32) string {
	return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", oui[0], oui[1], oui[2], byte(low>>16), byte(low>>8), byte(low))
}

func (inv *inventory) macsPerDevice() int {
	if inv.ifs == 1 {
		return 1
	}
	return inv.ifs - 1
}

func (inv *inventory) hasMAC(port int) bool {
	return inv.ifs == 1 || port < inv.ifs-1
}

// physicalMACs is P, where the virtual MAC slots begin.
func (inv *inventory) physicalMACs() int { return inv.n * inv.macsPerDevice() }

// macTotal is the size of the MAC ordinal space.
func (inv *inventory) macTotal() int { return inv.physicalMACs() + inv.n + inv.vms }

// macOf is the physical MAC ordinal of interface j, if it has one.
func (inv *inventory) macOf(j int) (int, bool) {
	dev, port := j/inv.ifs, j%inv.ifs
	if !inv.hasMAC(port) {
		return 0, false
	}
	return dev*inv.macsPerDevice() + port, true
}

// macObject is a MAC ordinal taken apart.
type macObject struct {
	ord   int
	iface int // interface ordinal (VM: the VM ordinal)
	owner attrs
	vm    bool
	mac   string
}

// macObject resolves MAC ordinal m, false when it does not exist (a slot of
// an unpaired device, or a deleted device's).
func (inv *inventory) macObject(m int) (macObject, bool) {
	p := inv.physicalMACs()
	switch {
	case m < 0 || m >= inv.macTotal():
		return macObject{}, false
	case m < p:
		dev, port := m/inv.macsPerDevice(), m%inv.macsPerDevice()
		a := inv.attrs(dev)
		o := macObject{ord: m, iface: dev*inv.ifs + port, owner: a}
		o.mac = macText(ouis[deviceTypes[a.devType].maker], inv.macs.low(m))
		if a.shared != nil && port == 0 {
			o.mac = a.shared.MAC.String()
		}
		return o, !a.deleted
	case m < p+inv.n:
		dev := m - p
		a := inv.attrs(dev)
		if !a.pair || a.deleted {
			return macObject{}, false
		}
		return macObject{ord: m, iface: dev * inv.ifs, owner: a,
			mac: fhrpMAC(deviceTypes[a.devType].maker, dev/2)}, true
	default:
		v := m - p - inv.n
		a := inv.vmAttrs(v)
		return macObject{ord: m, iface: v, owner: a, vm: true, mac: macText(vmwareOUI, inv.macs.low(v))}, true
	}
}

// ref renders the nested form of a MAC.
func (o *macObject) ref(u urls) MACRef {
	return MACRef{ID: o.ord + 1, URL: u.api("dcim/mac-addresses", o.ord+1), Display: o.mac, MACAddress: o.mac}
}

// parseMAC returns the ordinals of the MAC objects with address s: several
// for a virtual MAC that router pairs share.
func (inv *inventory) parseMAC(s string) []int {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return nil
	}
	text := strings.ToUpper(hw.String())
	var out []int
	keep := func(m int) {
		if o, ok := inv.macObject(m); ok && o.mac == text {
			out = append(out, m)
		}
	}
	if inv.overlap.Percent > 0 {
		for i := range min(inv.n, population.MaxShared) {
			if inv.overlap.Shared(i) && inv.overlap.Device(i).MAC.String() == text {
				keep(i * inv.macsPerDevice())
			}
		}
	}
	oui := [3]byte{hw[0], hw[1], hw[2]}
	low := uint32(hw[3])<<16 | uint32(hw[4])<<8 | uint32(hw[5])
	if oui == vmwareOUI {
		if v := inv.macs.ordinal(low); v < inv.vms {
			keep(inv.physicalMACs() + inv.n + v)
		}
	}
	if slices.Contains(ouis, oui) {
		for m := inv.macs.ordinal(low); m < inv.physicalMACs(); m += 1 << 24 {
			keep(m)
		}
	}
	if strings.HasPrefix(text, "00:00:0C:07:AC:") || strings.HasPrefix(text, "00:07:B4:00:01:") || strings.HasPrefix(text, "00:00:5E:00:0") {
		for pair := int(hw[5]) - 1; pair >= 0 && 2*pair < inv.n; pair += 255 {
			keep(inv.physicalMACs() + 2*pair)
			keep(inv.physicalMACs() + 2*pair + 1)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (inv *inventory) ifaceName(port int) string {
	if inv.hasMAC(port) {
		return "eth" + strconv.Itoa(port)
	}
	return "lo0"
}

// ifaceMACs are the MACs of device interface j, ordered by address as
// NetBox 4.2+ orders them, and its primary MAC (its own, never the virtual
// one).
func (inv *inventory) ifaceMACs(j int, u urls) (all []MACRef, primary *MACRef) {
	dev, port := j/inv.ifs, j%inv.ifs
	if m, ok := inv.macOf(j); ok {
		if o, ok := inv.macObject(m); ok {
			ref := o.ref(u)
			primary = &ref
			all = append(all, ref)
		}
	}
	if port == 0 {
		if o, ok := inv.macObject(inv.physicalMACs() + dev); ok {
			all = append(all, o.ref(u))
		}
	}
	slices.SortFunc(all, func(a, b MACRef) int { return strings.Compare(a.MACAddress, b.MACAddress) })
	return all, primary
}

// iface renders interface ordinal j.
func (inv *inventory) iface(j int, u urls) Interface {
	a := inv.attrs(j / inv.ifs)
	port := j % inv.ifs
	name := inv.ifaceName(port)
	it := Interface{
		ID: j + 1, URL: u.api("dcim/interfaces", j+1), DisplayURL: u.ui("dcim/interfaces", j+1),
		Display: name, Device: u.deviceRef(&a), Name: name,
		Type:         Choice{"virtual", "Virtual"},
		Enabled:      true,
		MACAddresses: []MACRef{},
		Tags:         []TagRef{},
		CustomFields: map[string]any{},
		Created:      a.created.Format(timeLayout),
		LastUpdated:  a.updated.Format(timeLayout),
	}
	all, primary := inv.ifaceMACs(j, u)
	if inv.hasMAC(port) {
		it.Type = Choice{"1000base-t", "1000BASE-T (1GE)"}
	}
	if primary != nil {
		it.MACAddress = &primary.MACAddress
		it.PrimaryMACAddress = primary
	}
	if all != nil {
		it.MACAddresses = all
	}
	return it
}

// vmIface renders the interface of VM ordinal v.
func (inv *inventory) vmIface(v int, u urls) VMInterface {
	a := inv.vmAttrs(v)
	o, _ := inv.macObject(inv.physicalMACs() + inv.n + v)
	ref := o.ref(u)
	return VMInterface{
		ID: v + 1, URL: u.api("virtualization/interfaces", v+1), DisplayURL: u.ui("virtualization/interfaces", v+1),
		Display: "eth0", VirtualMachine: u.vmRef(&a), Name: "eth0", Enabled: true,
		MACAddress: &ref.MACAddress, PrimaryMACAddress: &ref, MACAddresses: []MACRef{ref},
		Tags: []TagRef{}, CustomFields: map[string]any{},
		Created: a.created.Format(timeLayout), LastUpdated: a.updated.Format(timeLayout),
	}
}

// assigned is the nested interface of a MAC or IP address object.
func (inv *inventory) assigned(owner *attrs, iface int, vm bool, u urls) (string, AssignedInterface) {
	if vm {
		ref := u.vmRef(owner)
		return "virtualization.vminterface", AssignedInterface{ID: iface + 1, URL: u.api("virtualization/interfaces", iface+1),
			Display: "eth0", VirtualMachine: &ref, Name: "eth0"}
	}
	name := inv.ifaceName(iface % inv.ifs)
	ref := u.deviceRef(owner)
	return "dcim.interface", AssignedInterface{ID: iface + 1, URL: u.api("dcim/interfaces", iface+1), Display: name,
		Device: &ref, Name: name}
}

// mac renders MAC ordinal m, which must exist.
func (inv *inventory) mac(m int, u urls) MACAddress {
	o, _ := inv.macObject(m)
	ref := o.ref(u)
	typ, assigned := inv.assigned(&o.owner, o.iface, o.vm, u)
	return MACAddress{
		ID: ref.ID, URL: ref.URL, DisplayURL: u.ui("dcim/mac-addresses", m+1),
		Display: ref.Display, MACAddress: ref.MACAddress,
		AssignedObjectType: typ, AssignedObjectID: o.iface + 1, AssignedObject: assigned,
		Tags:         []TagRef{},
		CustomFields: map[string]any{},
		Created:      o.owner.created.Format(timeLayout),
		LastUpdated:  o.owner.updated.Format(timeLayout),
	}
}

// ordinalSet narrows a list to the intersection of the filters given; nil
// means no filter yet.
type ordinalSet map[int]bool

func (s ordinalSet) intersect(other ordinalSet) ordinalSet {
	if s == nil {
		return other
	}
	out := ordinalSet{}
	for k := range s {
		if other[k] {
			out[k] = true
		}
	}
	return out
}

// list returns the set's ordinals that exist, ascending; nil means every
// ordinal below n that exists.
func (s ordinalSet) list(n int, exists func(int) bool) ordinals.List {
	out := ordinals.List{}
	if s == nil {
		for k := range n {
			if exists(k) {
				out = append(out, int32(k))
			}
		}
		return out
	}
	for k := range s {
		if exists(k) {
			out = append(out, int32(k))
		}
	}
	slices.Sort(out)
	return out
}

// ownerIDs reads a filter of owner ids (device_id, virtual_machine_id). As
// in NetBox, a model choice filter (strict: the interface lists) refuses an
// unknown id with a 400, while a number filter (the MAC and IP address
// lists) ignores it.
func ownerIDs(q url.Values, param string, n int, exists func(int) bool, strict bool, errs validationErrors) (ordinalSet, bool) {
	vals, ok := q[param]
	if !ok {
		return nil, false
	}
	sel := ordinalSet{}
	for _, v := range vals {
		id, err := strconv.Atoi(v)
		switch {
		case err != nil && !strict:
			errs.add(param, "Enter a number.")
		case err != nil || id < 1 || id > n || !exists(id-1):
			if strict {
				errs.add(param, invalidChoice(v))
			}
		default:
			sel[id-1] = true
		}
	}
	return sel, true
}

// deviceOrdinals resolves device_id and device (name) filters.
func (s *Server) deviceOrdinals(q url.Values, strict bool, errs validationErrors) (ordinalSet, bool) {
	devs, byID := ownerIDs(q, "device_id", s.inv.n, s.inv.exists, strict, errs)
	names, byName := q["device"]
	if !byID && !byName {
		return nil, false
	}
	if devs == nil {
		devs = ordinalSet{}
	}
	for _, v := range names {
		ord, ok := s.deviceByName(v)
		if !ok {
			if strict {
				errs.add("device", invalidChoice(v))
			}
			continue
		}
		devs[ord] = true
	}
	return devs, true
}

// deviceByName finds a device by name: generated names end in their id;
// renamed devices are looked up among the renames.
func (s *Server) deviceByName(name string) (int, bool) {
	if ord, ok := s.inv.mut.byName(name); ok {
		return ord, true
	}
	cut := strings.LastIndexByte(name, '-')
	id, err := strconv.Atoi(name[cut+1:])
	if cut < 0 || err != nil || id < 1 || id > s.inv.n {
		return 0, false
	}
	a := s.inv.attrs(id - 1)
	got, ok := a.name()
	return id - 1, ok && got == name && !a.deleted
}

// ifaceExists says whether device interface j exists (its device does).
func (inv *inventory) ifaceExists(j int) bool { return inv.exists(j / inv.ifs) }

// interfaceList selects interfaces by device_id, device, mac_address and id.
func (s *Server) interfaceList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	total := s.inv.n * s.inv.ifs
	if devs, ok := s.deviceOrdinals(q, true, errs); ok {
		sel := ordinalSet{}
		for d := range devs {
			for p := range s.inv.ifs {
				sel[d*s.inv.ifs+p] = true
			}
		}
		set = set.intersect(sel)
	}
	if macs, ok := q["mac_address"]; ok {
		sel := ordinalSet{}
		for _, v := range macs {
			for _, m := range s.inv.parseMAC(v) {
				if o, ok := s.inv.macObject(m); ok && !o.vm {
					sel[o.iface] = true
				}
			}
		}
		set = set.intersect(sel)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, total))
	}
	l := list{render: func(j int, refs *refTable) any { return s.inv.iface(j, refs.u) }}
	if set == nil && !s.inv.mut.any() {
		l.view = ordinals.All(total)
	} else {
		l.view = set.list(total, s.inv.ifaceExists)
	}
	return l
}

// vmInterfaceList selects VM interfaces by virtual_machine_id (unknown ids
// are a 400, as for device interfaces) and id.
func (s *Server) vmInterfaceList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	all := func(int) bool { return true }
	if vms, ok := ownerIDs(q, "virtual_machine_id", s.inv.vms, all, true, errs); ok {
		set = set.intersect(vms)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, s.inv.vms))
	}
	l := list{render: func(v int, refs *refTable) any { return s.inv.vmIface(v, refs.u) }}
	if set == nil {
		l.view = ordinals.All(s.inv.vms)
	} else {
		l.view = set.list(s.inv.vms, all)
	}
	return l
}

// macList selects MAC addresses by mac_address, device_id, device,
// virtual_machine_id, interface_id (or assigned_object_id) and id, ordered
// by address as NetBox 4.2+ orders them. Unknown device and VM ids are
// ignored, as NetBox's number filters ignore them.
func (s *Server) macList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	mpd, p := s.inv.macsPerDevice(), s.inv.physicalMACs()
	if devs, ok := s.deviceOrdinals(q, false, errs); ok {
		sel := ordinalSet{}
		for d := range devs {
			for port := range mpd {
				sel[d*mpd+port] = true
			}
			sel[p+d] = true
		}
		set = set.intersect(sel)
	}
	if vms, ok := ownerIDs(q, "virtual_machine_id", s.inv.vms, func(int) bool { return true }, false, errs); ok {
		sel := ordinalSet{}
		for v := range vms {
			sel[p+s.inv.n+v] = true
		}
		set = set.intersect(sel)
	}
	if macs, ok := q["mac_address"]; ok {
		sel := ordinalSet{}
		for _, v := range macs {
			for _, m := range s.inv.parseMAC(v) {
				sel[m] = true
			}
		}
		set = set.intersect(sel)
	}
	for _, param := range []string{"interface_id", "assigned_object_id"} {
		vals, ok := q[param]
		if !ok {
			continue
		}
		sel := ordinalSet{}
		for _, v := range vals {
			id, err := strconv.Atoi(v)
			if err != nil || id < 1 || id > s.inv.n*s.inv.ifs {
				errs.add(param, invalidChoice(v))
				continue
			}
			if m, ok := s.inv.macOf(id - 1); ok {
				sel[m] = true
			}
			if (id-1)%s.inv.ifs == 0 {
				sel[p+(id-1)/s.inv.ifs] = true
			}
		}
		set = set.intersect(sel)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, s.inv.macTotal()))
	}
	exists := func(m int) bool { _, ok := s.inv.macObject(m); return ok }
	build := func() ordinals.List {
		l := set.list(s.inv.macTotal(), exists)
		addr := make(map[int32]string, len(l))
		for _, m := range l {
			o, _ := s.inv.macObject(int(m))
			addr[m] = o.mac
		}
		slices.SortStableFunc(l, func(a, b int32) int { return strings.Compare(addr[a], addr[b]) })
		return l
	}
	l := list{render: func(m int, refs *refTable) any { return s.inv.mac(m, refs.u) }}
	if set == nil {
		l.view = s.results.Get(fmt.Sprintf("macs@%d", s.inv.mut.generation()), build)
	} else {
		l.view = build()
	}
	return l
}

// idSet is the ordinals of the valid ids among vals; others match nothing.
func idSet(vals []string, total int) ordinalSet {
	sel := ordinalSet{}
	for _, v := range vals {
		if id, err := strconv.Atoi(v); err == nil && id >= 1 && id <= total {
			sel[id-1] = true
		}
	}
	return sel
}
