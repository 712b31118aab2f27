package netboxemu

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// Interfaces: device ordinal i has interfaces i*K .. i*K+K-1 (K interfaces
// per device); the last is lo0 without a MAC when K > 1. MACs are numbered
// over the interfaces that have one: m = i*macsPerDevice + port.

func (inv *inventory) macsPerDevice() int {
	if inv.ifs == 1 {
		return 1
	}
	return inv.ifs - 1
}

func (inv *inventory) hasMAC(port int) bool {
	return inv.ifs == 1 || port < inv.ifs-1
}

// macOf is the MAC ordinal of interface j, if it has a MAC.
func (inv *inventory) macOf(j int) (int, bool) {
	dev, port := j/inv.ifs, j%inv.ifs
	if !inv.hasMAC(port) {
		return 0, false
	}
	return dev*inv.macsPerDevice() + port, true
}

// ifaceOf is the interface ordinal of MAC m.
func (inv *inventory) ifaceOf(m int) int {
	dev, port := m/inv.macsPerDevice(), m%inv.macsPerDevice()
	return dev*inv.ifs + port
}

func (inv *inventory) macString(m int) string {
	return fmt.Sprintf("02:%02X:%02X:%02X:%02X:%02X", byte(inv.seed), byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// parseMAC returns the MAC ordinal a MAC string names, if it is one of ours.
func (inv *inventory) parseMAC(s string) (int, bool) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 || hw[0] != 0x02 || hw[1] != byte(inv.seed) {
		return 0, false
	}
	m := int(hw[2])<<24 | int(hw[3])<<16 | int(hw[4])<<8 | int(hw[5])
	return m, m < inv.n*inv.macsPerDevice()
}

func (inv *inventory) macRef(m int, u urls) MACRef {
	mac := inv.macString(m)
	return MACRef{ID: m + 1, URL: u.api("dcim/mac-addresses", m+1), Display: mac, MACAddress: mac}
}

func (inv *inventory) ifaceName(port int) string {
	if inv.hasMAC(port) {
		return "eth" + strconv.Itoa(port)
	}
	return "lo0"
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
	if m, ok := inv.macOf(j); ok {
		ref := inv.macRef(m, u)
		it.Type = Choice{"1000base-t", "1000BASE-T (1GE)"}
		it.MACAddress = &ref.MACAddress
		it.PrimaryMACAddress = &ref
		it.MACAddresses = []MACRef{ref}
	}
	return it
}

// mac renders MAC ordinal m.
func (inv *inventory) mac(m int, u urls) MACAddress {
	j := inv.ifaceOf(m)
	a := inv.attrs(j / inv.ifs)
	name := inv.ifaceName(j % inv.ifs)
	ref := inv.macRef(m, u)
	return MACAddress{
		ID: ref.ID, URL: ref.URL, DisplayURL: u.ui("dcim/mac-addresses", m+1),
		Display: ref.Display, MACAddress: ref.MACAddress,
		AssignedObjectType: "dcim.interface", AssignedObjectID: j + 1,
		AssignedObject: AssignedInterface{
			ID: j + 1, URL: u.api("dcim/interfaces", j+1), Display: name,
			Device: u.deviceRef(&a), Name: name,
		},
		Tags:         []TagRef{},
		CustomFields: map[string]any{},
		Created:      a.created.Format(timeLayout),
		LastUpdated:  a.updated.Format(timeLayout),
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

func (s ordinalSet) view(n int) ordinals.View {
	if s == nil {
		return ordinals.All(n)
	}
	out := make(ordinals.List, 0, len(s))
	for k := range s {
		out = append(out, int32(k))
	}
	slices.Sort(out)
	return out
}

// deviceOrdinals resolves device_id and device (name) filters; unknown ones
// are NetBox's 400.
func (s *Server) deviceOrdinals(q url.Values, errs validationErrors) (map[int]bool, bool) {
	ids, byID := q["device_id"]
	names, byName := q["device"]
	if !byID && !byName {
		return nil, false
	}
	devs := map[int]bool{}
	for _, v := range ids {
		id, err := strconv.Atoi(v)
		if err != nil || id < 1 || id > s.inv.n {
			errs.add("device_id", invalidChoice(v))
			continue
		}
		devs[id-1] = true
	}
	for _, v := range names {
		ord, ok := s.deviceByName(v)
		if !ok {
			errs.add("device", invalidChoice(v))
			continue
		}
		devs[ord] = true
	}
	return devs, true
}

// deviceByName finds a device by name: names end in their id.
func (s *Server) deviceByName(name string) (int, bool) {
	cut := strings.LastIndexByte(name, '-')
	id, err := strconv.Atoi(name[cut+1:])
	if cut < 0 || err != nil || id < 1 || id > s.inv.n {
		return 0, false
	}
	a := s.inv.attrs(id - 1)
	got, ok := a.name()
	return id - 1, ok && got == name
}

// interfaceList selects interfaces by device_id, device, mac_address and id.
func (s *Server) interfaceList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	total := s.inv.n * s.inv.ifs
	if devs, ok := s.deviceOrdinals(q, errs); ok {
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
			if m, ok := s.inv.parseMAC(v); ok {
				sel[s.inv.ifaceOf(m)] = true
			}
		}
		set = set.intersect(sel)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, total))
	}
	return list{view: set.view(total), render: func(j int, refs *refTable) any { return s.inv.iface(j, refs.u) }}
}

// macList selects MAC addresses by mac_address, device_id, device,
// interface_id (or assigned_object_id) and id.
func (s *Server) macList(q url.Values, errs validationErrors) list {
	var set ordinalSet
	total := s.inv.n * s.inv.macsPerDevice()
	if devs, ok := s.deviceOrdinals(q, errs); ok {
		sel := ordinalSet{}
		for d := range devs {
			for p := range s.inv.macsPerDevice() {
				sel[d*s.inv.macsPerDevice()+p] = true
			}
		}
		set = set.intersect(sel)
	}
	if macs, ok := q["mac_address"]; ok {
		sel := ordinalSet{}
		for _, v := range macs {
			if m, ok := s.inv.parseMAC(v); ok {
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
		}
		set = set.intersect(sel)
	}
	if ids, ok := q["id"]; ok {
		set = set.intersect(idSet(ids, total))
	}
	return list{view: set.view(total), render: func(m int, refs *refTable) any { return s.inv.mac(m, refs.u) }}
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
