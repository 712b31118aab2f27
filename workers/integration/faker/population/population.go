// Package population is a deterministic population of network devices whose
// identities look like those real inventories hold: MACs under real vendor
// OUIs (never the locally administered 02:… of a lab), the vendor and kind of
// device that go with them, the virtual MACs that first-hop redundancy pairs
// share, and a share of devices that several inventories report alike.
//
// The Faker (package faker) and the Armis and NetBox emulators under test/
// draw from it, each in its own Realm, and realms never share a MAC: each
// has its own quarter of the OUIs of Vendors (128 of them). Within one
// (realm, seed) every (device, k) pair has its own MAC, by construction (a
// keyed permutation of the 2^31 addresses under the realm's OUIs). Different
// seeds of one realm are different permutations, so their MACs coincide only
// by chance (about n1*n2/2^31 shared MACs between inventories of n1 and n2
// MACs); being deterministic, a test that passes with given seeds always
// does.
//
// Overlap is how two generators report the same device on purpose: every
// generator given the same Overlap reports its shared devices (a Percent of
// its ordinals) with one MAC, one IPv4 and IPv6 address and one hostname,
// taken from the shared realm, as a device that Armis and NetBox both know.
package population

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Limits of MAC: ordinals below MaxDevices, MAC numbers below MaxMACs.
const (
	// MaxDevices bounds the device ordinals a realm can give MACs to.
	MaxDevices = 1 << 23
	// MaxMACs bounds the MACs one device can have.
	MaxMACs = 256
	// MaxShared bounds the ordinals an Overlap can share: the shared IPv4
	// plan is 198.18.0.0/15 (RFC 2544), less its first and last address.
	MaxShared = 1<<17 - 2
)

// Realm keeps generators apart: each draws its MACs from its own OUIs.
type Realm uint8

// The realms of the generators that use the population.
const (
	// RealmFaker is the Faker's.
	RealmFaker Realm = 1 + iota
	// RealmArmis is the Armis emulator's.
	RealmArmis
	// RealmNetBox is the NetBox emulator's.
	RealmNetBox
	// RealmShared is the devices an Overlap shares between generators.
	RealmShared
)

// Addr is a MAC address.
type Addr [6]byte

// String is the address in upper-case hex pairs separated by colons, as
// NetBox writes MACs.
func (a Addr) String() string { return a.format("0123456789ABCDEF") }

// Lower is the address in lower-case hex pairs separated by colons, as Armis
// writes MACs.
func (a Addr) Lower() string { return a.format("0123456789abcdef") }

// format writes the address with the given hex digits; it runs for every
// MAC of every generated device, so it does not go through fmt.
func (a Addr) format(digits string) string {
	var b [17]byte
	for i, v := range a {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i], b[3*i+1] = digits[v>>4], digits[v&0x0f]
	}
	return string(b[:])
}

// OUI is the address's first three bytes as six upper-case hex digits.
func (a Addr) OUI() string {
	s := a.String()
	return s[:2] + s[3:5] + s[6:8]
}

// ouiEntry is one row of the permutation's OUI table.
type ouiEntry struct {
	prefix [3]byte
	vendor int // index in Vendors
}

// ouiBits is log2 of the number of OUIs each realm has; every realm's
// table must hold exactly that many.
const ouiBits = 7

// realms is the number of realms, each with its own OUIs.
const realms = 4

var (
	ouiTable [realms][1 << ouiBits]ouiEntry
	byOUI    = map[string]int{}
)

func init() {
	var n [realms]int
	for v, vendor := range Vendors {
		if len(vendor.OUIs)%realms != 0 {
			panic(fmt.Sprintf("population: %s has %d OUIs, not a multiple of %d", vendor.Name, len(vendor.OUIs), realms))
		}
		for j, o := range vendor.OUIs {
			raw, err := strconv.ParseUint(o, 16, 32)
			r := j % realms
			if err != nil || len(o) != 6 || n[r] >= len(ouiTable[r]) {
				panic(fmt.Sprintf("population: OUI %q of %s is malformed or one too many", o, vendor.Name))
			}
			if _, dup := byOUI[o]; dup {
				panic("population: OUI " + o + " listed twice")
			}
			ouiTable[r][n[r]] = ouiEntry{prefix: [3]byte{byte(raw >> 16), byte(raw >> 8), byte(raw)}, vendor: v}
			byOUI[o] = v
			n[r]++
		}
	}
	for r := range n {
		if n[r] != len(ouiTable[r]) {
			panic(fmt.Sprintf("population: realm %d has %d OUIs, want %d", r+1, n[r], len(ouiTable[r])))
		}
	}
}

// mix is SplitMix64's finalizer over the sum of its inputs.
func mix(vs ...uint64) uint64 {
	var z uint64 = 0x9e3779b97f4a7c15
	for _, v := range vs {
		z += v
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
	}
	return z
}

// permute is a keyed permutation of [0, 2^31): a four-round Feistel network
// on 32 bits, walked until it lands in range (a permutation restricted by
// cycle walking stays one).
func permute(key uint64, x uint32) uint32 {
	for {
		l, r := uint16(x>>16), uint16(x)
		for round := range uint64(4) {
			l, r = r, l^uint16(mix(key, round, uint64(r))>>24)
		}
		x = uint32(l)<<16 | uint32(r)
		if x < 1<<31 {
			return x
		}
	}
}

// MAC is the k-th MAC of device ordinal i of the generator (realm, seed): a
// globally administered unicast address under one of the OUIs of Vendors.
// Distinct (i, k) of one (realm, seed) never share a MAC. It panics when i is
// outside [0, MaxDevices) or k outside [0, MaxMACs).
func MAC(realm Realm, seed uint64, i, k int) Addr {
	a, _ := mac(realm, seed, i, k)
	return a
}

// mac is MAC and the index in Vendors of its vendor.
func mac(realm Realm, seed uint64, i, k int) (Addr, int) {
	if i < 0 || i >= MaxDevices || k < 0 || k >= MaxMACs {
		panic(fmt.Sprintf("population: MAC(%d, %d) outside %d devices of %d MACs", i, k, MaxDevices, MaxMACs))
	}
	y := permute(mix(uint64(realm), seed), uint32(k)<<23|uint32(i)) //nolint:gosec // bounded above
	e := ouiTable[(int(realm)-1)%realms][y>>24]
	return Addr{e.prefix[0], e.prefix[1], e.prefix[2], byte(y >> 16), byte(y >> 8), byte(y)}, e.vendor
}

// VendorOf returns the vendor of a MAC under one of the OUIs of Vendors.
func VendorOf(a Addr) (*Vendor, bool) {
	v, ok := byOUI[a.OUI()]
	if !ok {
		return nil, false
	}
	return &Vendors[v], true
}

// Device is the identity of one generated device: its vendor (that of its
// first MAC), its kind (one the vendor makes) and its first MAC.
type Device struct {
	// Vendor made the device.
	Vendor *Vendor
	// Kind is what the device is.
	Kind Kind
	// MAC is the device's first MAC, MAC(realm, seed, i, 0).
	MAC Addr
}

// DeviceOf is the identity of device ordinal i of (realm, seed); its kind is
// drawn from the vendor's with pick (given the number of kinds, it returns
// an index below it).
func DeviceOf(realm Realm, seed uint64, i int, pick func(n int) int) Device {
	a, vi := mac(realm, seed, i, 0)
	v := &Vendors[vi]
	return Device{Vendor: v, Kind: v.Kinds[pick(len(v.Kinds))], MAC: a}
}

// Overlap says which devices a generator shares with every other generator
// given the same Overlap: ordinal i is shared when i%100 < Percent and i <
// MaxShared, so two generators of n1 and n2 devices share about Percent% of
// min(n1, n2) devices, the same ordinals in both.
type Overlap struct {
	// Seed selects the shared devices' identities.
	Seed uint64
	// Percent is the share of ordinals, 0..100, that are shared.
	Percent int
}

// Shared reports whether ordinal i is a shared device.
func (o Overlap) Shared(i int) bool {
	return o.Percent > 0 && i >= 0 && i < MaxShared && i%100 < o.Percent
}

// SharedDevice is how every generator reports a shared device.
type SharedDevice struct {
	Device
	// IPv4 is the device's only IPv4 address, in 198.18.0.0/15.
	IPv4 netip.Addr
	// IPv6 is the device's only IPv6 address, in 2001:db8:5ea::/48.
	IPv6 netip.Addr
	// Hostname is the device's name.
	Hostname string
}

var (
	sharedV4 = netip.MustParseAddr("198.18.0.0").As4()
	sharedV6 = netip.MustParseAddr("2001:db8:5ea::").As16()
)

// Device returns the identity of shared ordinal i (whether or not Shared(i)
// holds): the same in every generator given o. It panics when i is outside
// [0, MaxShared).
func (o Overlap) Device(i int) SharedDevice {
	if i < 0 || i >= MaxShared {
		panic(fmt.Sprintf("population: shared ordinal %d outside [0, %d)", i, MaxShared))
	}
	d := DeviceOf(RealmShared, o.Seed, i, func(n int) int { return int(mix(o.Seed, uint64(i), 0x6b696e64) % uint64(n)) }) //nolint:gosec // n is small
	v4, v6 := sharedV4, sharedV6
	off := uint32(i + 1) //nolint:gosec // below 2^17
	v4[1] += byte(off >> 16)
	v4[2], v4[3] = byte(off>>8), byte(off)
	v6[13], v6[14], v6[15] = byte(off>>16), byte(off>>8), byte(off)
	return SharedDevice{Device: d, IPv4: netip.AddrFrom4(v4), IPv6: netip.AddrFrom16(v6),
		Hostname: fmt.Sprintf("%s-%d-%06d", d.Kind, o.Seed, i+1)}
}

// First-hop redundancy protocols answer for a virtual router with a virtual
// MAC that every router of the group shares; an inventory that lists it on a
// router lists it on each of them.

// HSRPv1MAC is the virtual MAC of HSRP version 1 group g: 00:00:0C:07:AC:gg.
func HSRPv1MAC(group uint8) Addr { return Addr{0x00, 0x00, 0x0C, 0x07, 0xAC, group} }

// HSRPv2MAC is the virtual MAC of HSRP version 2 group g (0..4095):
// 00:00:0C:9F:Fg:gg.
func HSRPv2MAC(group uint16) Addr {
	return Addr{0x00, 0x00, 0x0C, 0x9F, 0xF0 | byte(group>>8&0x0F), byte(group)}
}

// VRRPMAC is the virtual MAC of IPv4 VRRP router id vrid: 00:00:5E:00:01:vr.
func VRRPMAC(vrid uint8) Addr { return Addr{0x00, 0x00, 0x5E, 0x00, 0x01, vrid} }

// VRRPv6MAC is the virtual MAC of IPv6 VRRP router id vrid: 00:00:5E:00:02:vr.
func VRRPv6MAC(vrid uint8) Addr { return Addr{0x00, 0x00, 0x5E, 0x00, 0x02, vrid} }

// GLBPMAC is the virtual MAC of GLBP group g's forwarder f: 00:07:B4:0g:gg:ff
// (group 0..1023 in ten bits, forwarder 1..4).
func GLBPMAC(group uint16, forwarder uint8) Addr {
	return Addr{0x00, 0x07, 0xB4, byte(group >> 8 & 0x03), byte(group), forwarder}
}
