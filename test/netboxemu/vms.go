package netboxemu

import (
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// vmSalt separates the VM generators from the devices'.
const vmSalt = 0x766d

// MaxVirtualMachines is the largest VM inventory the address plan
// (172.16.0.0/12) keeps unique.
const MaxVirtualMachines = 1<<20 - 2

// vmAttrs are the attributes of VM ordinal v: a PCG generator seeded with
// (Seed, v) and a salt draws them.
func (inv *inventory) vmAttrs(v int) attrs {
	r := rand.New(rand.NewPCG(inv.seed^vmSalt, uint64(v)))
	a := attrs{ord: v, tenant: -1, platform: -1, owner: -1, vc: -1, vm: true, named: true}
	a.site = ordinals.Pick(r, siteWeights)
	a.role = vmRoles[r.IntN(len(vmRoles))]
	a.status = ordinals.Pick(r, vmStatusWeights)
	if r.IntN(100) >= 30 {
		a.tenant = r.IntN(len(tenants))
	}
	for t, odds := range tagOdds {
		if r.IntN(100) < odds {
			a.tags |= 1 << t
		}
	}
	a.hasIP4 = r.IntN(100) < 85
	a.hasIP6 = r.IntN(100) < 20
	a.ifaceIP4 = a.hasIP4 || r.IntN(100) < 50
	a.dnsName = r.IntN(2) == 0
	if ro := roles[a.role]; len(ro.platforms) > 0 {
		a.platform = ro.platforms[r.IntN(len(ro.platforms))]
	}
	a.created = inv.epoch.Add(-time.Duration(r.Int64N(createdSpan)) * time.Microsecond)
	a.updated = a.created.Add(time.Duration(r.Int64N(inv.epoch.Sub(a.created).Microseconds()+1)) * time.Microsecond)
	a.criticality = r.IntN(len(criticalities))
	a.monitored = r.IntN(100) < 70
	if r.IntN(100) >= 20 {
		a.owner = r.IntN(len(assetOwners))
	}
	return a
}

func (u urls) vmRef(a *attrs) DeviceRef {
	name, _ := a.name()
	return DeviceRef{ID: a.ord + 1, URL: u.api("virtualization/virtual-machines", a.ord+1), Display: name, Name: &name}
}

// vm renders VM ordinal v.
func (inv *inventory) vm(v int, refs *refTable) VirtualMachine {
	a := inv.vmAttrs(v)
	u := refs.u
	name, _ := a.name()
	m := VirtualMachine{
		ID: v + 1, URL: u.api("virtualization/virtual-machines", v+1), DisplayURL: u.ui("virtualization/virtual-machines", v+1),
		Display: name, Name: name,
		Status:        Choice{statuses[a.status].value, statuses[a.status].label},
		Site:          refs.sites[a.site],
		Role:          refs.roles[a.role],
		VCPUs:         float64(int(1) << (v % 4)),
		Memory:        2048 << (v % 4),
		Disk:          40960,
		ConfigContext: configContexts[a.site],
		Tags:          []TagRef{},
		CustomFields: DeviceCustomFields{
			Criticality: criticalities[a.criticality],
			Monitored:   a.monitored,
		},
		Created:        a.created.Format(timeLayout),
		LastUpdated:    a.updated.Format(timeLayout),
		InterfaceCount: 1,
	}
	if a.tenant >= 0 {
		m.Tenant = &refs.tenants[a.tenant]
	}
	if a.platform >= 0 {
		m.Platform = &refs.platforms[a.platform]
	}
	if a.hasIP4 {
		m.PrimaryIP4 = inv.ipRef(u, &a, slotIP4)
		m.PrimaryIP = m.PrimaryIP4
	}
	if a.hasIP6 {
		m.PrimaryIP6 = inv.ipRef(u, &a, slotIP6)
		m.PrimaryIP = m.PrimaryIP6
	}
	for t := range tags {
		if a.tags&(1<<t) != 0 {
			m.Tags = append(m.Tags, refs.tags[t])
		}
	}
	if a.owner >= 0 {
		m.CustomFields.AssetOwner = &assetOwners[a.owner]
	}
	return m
}

// vmList selects virtual machines with the device filters (a VM has no
// "inventory" status: asking for it is a 400, as in NetBox).
func (s *Server) vmList(q url.Values, errs validationErrors) list {
	f := parseDeviceFilter(q, errs)
	for _, v := range q["status"] {
		if v == "inventory" {
			errs.add("status", invalidChoice(v))
		}
	}
	l := list{key: "vm:" + f.key, render: func(v int, refs *refTable) any { return s.inv.vm(v, refs) },
		attrs: s.inv.vmAttrs}
	switch {
	case len(errs) > 0:
		l.view = ordinals.All(0)
	case f.all():
		l.view = ordinals.All(s.inv.vms)
	default:
		l.view = s.results.Get(l.key, func() ordinals.List {
			var out ordinals.List
			for v := range s.inv.vms {
				a := s.inv.vmAttrs(v)
				if f.match(&a) {
					out = append(out, int32(v))
				}
			}
			return out
		})
	}
	return l
}
