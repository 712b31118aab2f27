package armisemu

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// Device is one Armis device as the search returns it, with the fields and
// casing of REFERENCE.md. Absent addresses are null.
type Device struct {
	// ID is the Armis device id, 1..N.
	ID int `json:"id"`
	// IPAddress holds one or more IPv4 addresses joined with ", ", or null.
	IPAddress *string `json:"ipAddress"`
	// IPv6 holds one to three IPv6 addresses (global, unique local,
	// link-local) joined with ", ", or null.
	IPv6 *string `json:"ipv6"`
	// MacAddress holds one or more lower-case MACs joined with ", ", or null
	// when Armis knows none.
	MacAddress *string `json:"macAddress"`
	// Name is the host name; empty for about 2% of devices.
	Name string `json:"name"`
	// Type is the device type, for example "Laptops".
	Type string `json:"type"`
	// Category groups types, for example "Computers".
	Category string `json:"category"`
	// Manufacturer is the vendor, the owner of the first MAC's OUI.
	Manufacturer string `json:"manufacturer"`
	// Model is the vendor's model.
	Model string `json:"model"`
	// OperatingSystem is the OS name.
	OperatingSystem string `json:"operatingSystem"`
	// OperatingSystemVersion is the OS version.
	OperatingSystemVersion string `json:"operatingSystemVersion"`
	// FirstSeen is ISO 8601 with an offset, with microseconds or (for about
	// a tenth of devices) whole seconds.
	FirstSeen string `json:"firstSeen"`
	// LastSeen is ISO 8601 with an offset, with microseconds or (for about a
	// tenth of devices) whole seconds.
	LastSeen string `json:"lastSeen"`
	// RiskLevel is 1..10.
	RiskLevel int `json:"riskLevel"`
	// Boundaries holds one or two boundary names joined with ", ".
	Boundaries string `json:"boundaries"`
	// Tags is a list, possibly empty, never null.
	Tags []string `json:"tags"`
	// Site is where the device is.
	Site Site `json:"site"`
	// Sensor is what saw the device.
	Sensor Sensor `json:"sensor"`
	// CustomProperties is an object, possibly empty.
	CustomProperties map[string]string `json:"customProperties"`
	// Visibility is "Full" or "Limited".
	Visibility string `json:"visibility"`
	// BusinessImpact is "Unassigned", "Low", "Medium", "High" or "Critical".
	BusinessImpact string `json:"businessImpact"`
}

// Site is a device's site.
type Site struct {
	// Name of the site.
	Name string `json:"name"`
	// Location of the site.
	Location string `json:"location"`
}

// Sensor is the sensor or integration that saw a device.
type Sensor struct {
	// Name of the sensor.
	Name string `json:"name"`
	// Type of the sensor.
	Type string `json:"type"`
}

// inventory generates devices on demand from (seed, ordinal, epoch).
type inventory struct {
	seed    uint64
	n       int
	epoch   time.Time
	overlap population.Overlap
	// pairEvery: ordinals i with i%pairEvery >= pairEvery-2 are the routers
	// of a first-hop redundancy pair; zero means none.
	pairEvery int
}

// Spans over which timestamps are spread, in microseconds.
const (
	lastSeenSpan  = int64(30 * 24 * time.Hour / time.Microsecond)
	firstSeenSpan = int64(365 * 24 * time.Hour / time.Microsecond)
)

// core holds the attributes AQL filters on. They are the first draws of a
// device's generator, so a filter scan computes only these.
type core struct {
	lastSeen   time.Time
	whole      bool  // times are written without a fraction
	boundaries uint8 // bit b set: in boundaries[b]
	site       int   // index in sites
	kind       population.Kind
	vendor     *population.Vendor
	mac        population.Addr // the first MAC
	shared     bool
}

func (inv *inventory) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(inv.seed, uint64(i)))
}

// pair returns the pair number of ordinal i when it is one of the two
// routers of a first-hop redundancy pair.
func (inv *inventory) pair(i int) (int, bool) {
	if inv.pairEvery < 2 || inv.overlap.Shared(i) || i%inv.pairEvery < inv.pairEvery-2 {
		return 0, false
	}
	return i / inv.pairEvery, true
}

func (inv *inventory) drawCore(r *rand.Rand, i int) core {
	c := core{lastSeen: inv.epoch.Add(-time.Duration(r.Int64N(lastSeenSpan)) * time.Microsecond)}
	if r.IntN(10) == 0 {
		c.whole = true
		c.lastSeen = c.lastSeen.Truncate(time.Second)
	}
	first := ordinals.Pick(r, boundaryWeights)
	c.boundaries = 1 << first
	if r.IntN(100) < 15 {
		second := (first + 1 + r.IntN(len(boundaries)-1)) % len(boundaries)
		c.boundaries |= 1 << second
	}
	c.site = r.IntN(len(sites))
	var d population.Device
	if inv.overlap.Shared(i) {
		d, c.shared = inv.overlap.Device(i).Device, true
	} else {
		d = population.DeviceOf(population.RealmArmis, inv.seed, i, r.IntN)
	}
	c.vendor, c.kind, c.mac = d.Vendor, d.Kind, d.MAC
	if _, ok := inv.pair(i); ok {
		c.kind = population.KindRouter
	}
	return c
}

// core returns the filter attributes of ordinal i.
func (inv *inventory) core(i int) core {
	return inv.drawCore(inv.rng(i), i)
}

// formatTime writes an Armis timestamp: microseconds and an offset, or whole
// seconds and an offset, as Armis deployments differ.
func formatTime(t time.Time, whole bool) string {
	if whole {
		return t.Format(wholeTimeLayout)
	}
	return t.Format(timeLayout)
}

// device generates ordinal i (id i+1).
func (inv *inventory) device(i int) Device {
	r := inv.rng(i)
	c := inv.drawCore(r, i)
	kind := armisTypes[c.kind]
	models, ok := kind.models[c.vendor.Name]
	if !ok {
		models = kind.models[""]
	}
	os := kind.oses[r.IntN(len(kind.oses))]
	first := c.lastSeen.Add(-time.Duration(r.Int64N(firstSeenSpan)) * time.Microsecond)
	if c.whole {
		first = first.Truncate(time.Second)
	}
	d := Device{
		ID:                     i + 1,
		Type:                   kind.typ,
		Category:               kind.category,
		Manufacturer:           c.vendor.Name,
		Model:                  models[r.IntN(len(models))],
		OperatingSystem:        os.name,
		OperatingSystemVersion: os.versions[r.IntN(len(os.versions))],
		LastSeen:               formatTime(c.lastSeen, c.whole),
		FirstSeen:              formatTime(first, c.whole),
		RiskLevel:              1 + r.IntN(10),
		Boundaries:             boundaryNames(c.boundaries),
		Site:                   sites[c.site],
		Sensor:                 sensors[r.IntN(len(sensors))],
		Visibility:             visibilities[ordinals.Pick(r, visibilityW)],
		BusinessImpact:         impacts[ordinals.Pick(r, impactWeights)],
		Tags:                   []string{},
		CustomProperties:       map[string]string{},
	}
	named, hasV4, v6, macs := r.IntN(100) >= 2, r.IntN(100) >= 1, ipv6Count(r), macCount(r)
	if named {
		d.Name = fmt.Sprintf("%s-%06d", kind.prefix, i+1)
	}
	if hasV4 {
		d.IPAddress = ptr(inv.ipv4s(i, ordinals.Pick(r, extraIPWeights)))
	}
	if v6 > 0 {
		d.IPv6 = ptr(ipv6s(i, c.mac, v6))
	}
	if p, ok := inv.pair(i); ok {
		// Both routers of the pair list the group's virtual MAC after their own.
		d.MacAddress = ptr(c.mac.Lower() + ", " + virtualMAC(c.vendor, p).Lower())
	} else if macs > 0 {
		d.MacAddress = ptr(inv.macs(i, c.mac, macs))
	}
	if c.shared {
		// A device another inventory knows too: the same name and addresses there.
		sd := inv.overlap.Device(i)
		d.Name, d.IPAddress, d.IPv6, d.MacAddress = sd.Hostname, ptr(sd.IPv4.String()), ptr(sd.IPv6.String()), ptr(sd.MAC.Lower())
	}
	for t := range tagPool {
		if r.IntN(100) < 12 {
			d.Tags = append(d.Tags, tagPool[t])
		}
	}
	if r.IntN(2) == 0 {
		d.CustomProperties["assetOwner"] = owners[r.IntN(len(owners))]
	}
	if r.IntN(10) < 3 {
		d.CustomProperties["costCenter"] = fmt.Sprintf("CC-%04d", r.IntN(10000))
	}
	return d
}

// virtualMAC is the virtual MAC pair p shares: HSRP for Cisco routers, VRRP
// for the others, group p%255+1 (group numbers repeat across VLANs and
// sites, and so across inventories).
func virtualMAC(v *population.Vendor, p int) population.Addr {
	group := byte(p%255 + 1)
	if v.Name == "Cisco" {
		return population.HSRPv1MAC(group)
	}
	return population.VRRPMAC(group)
}

// ipv6Count is how many IPv6 addresses a device has: 80% none, 12% one, 6%
// two, 2% three.
func ipv6Count(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 80:
		return 0
	case p < 92:
		return 1
	case p < 98:
		return 2
	default:
		return 3
	}
}

// ipv6s lists count addresses of ordinal i: a global one
// (2001:db8:a5::/48), a unique local one (fd00:a5::/64) and the link-local
// one derived from its MAC (EUI-64), in that order.
func ipv6s(i int, mac population.Addr, count int) string {
	off := uint64(i + 1) //nolint:gosec // i >= 0
	global := netip.MustParseAddr("2001:db8:a5::").As16()
	ula := netip.MustParseAddr("fd00:a5::").As16()
	for k := range 8 {
		global[15-k] = byte(off >> (8 * k))
		ula[15-k] = byte(off >> (8 * k))
	}
	ll := [16]byte{0xfe, 0x80, 8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	all := []string{netip.AddrFrom16(global).String(), netip.AddrFrom16(ula).String(), netip.AddrFrom16(ll).String()}
	return strings.Join(all[:count], ", ")
}

// macCount is weighted to few: 5% none (a null macAddress), 75% one, 17% two to four, 3% five to
// two hundred (skewed low).
func macCount(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 5:
		return 0
	case p < 80:
		return 1
	case p < 97:
		return 2 + r.IntN(3)
	default:
		u := r.Float64()
		return 5 + int(195*u*u*u)
	}
}

// Address plan: every address is a function of the ordinal, so addresses are
// unique across the inventory without bookkeeping.
var (
	primaryBase  = netip.MustParseAddr("172.16.0.0") // /12: 2^20 addresses
	overflowBase = netip.MustParseAddr("100.64.0.0") // /10: 2^22 addresses
	extraBase    = netip.MustParseAddr("10.0.0.0")   // /8: two per device
	primarySize  = 1<<20 - 1                         // ordinals served from 172.16/12
)

func addOffset(base netip.Addr, off int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// primaryIP returns the first address of ordinal i's ipAddress field.
func primaryIP(i int) netip.Addr {
	if i < primarySize {
		return addOffset(primaryBase, i+1)
	}
	return addOffset(overflowBase, i-primarySize+1)
}

func (inv *inventory) ipv4s(i, extra int) string {
	ips := make([]string, 0, 1+extra)
	ips = append(ips, primaryIP(i).String())
	for k := range extra {
		ips = append(ips, addOffset(extraBase, 2*i+k+1).String())
	}
	return strings.Join(ips, ", ")
}

// macs lists count MACs of ordinal i, the first being first: real vendor
// OUIs, unique within the inventory (population.MAC), in lower case as
// Armis writes them.
func (inv *inventory) macs(i int, first population.Addr, count int) string {
	var b strings.Builder
	b.WriteString(first.Lower())
	for k := 1; k < count; k++ {
		b.WriteString(", ")
		b.WriteString(population.MAC(population.RealmArmis, inv.seed, i, k).Lower())
	}
	return b.String()
}

func boundaryNames(mask uint8) string {
	names := make([]string, 0, 2)
	for b, name := range boundaries {
		if mask&(1<<b) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

func ptr[T any](v T) *T { return &v }

// Salts keep the seed-derived streams apart.
const (
	saltToken uint64 = 0x746f6b656e
)

// Device returns the device with the given id, as the search would return
// it, and false when no device has that id.
func (s *Server) Device(id int) (Device, bool) {
	if id < 1 || id > s.inv.n {
		return Device{}, false
	}
	return s.inv.device(id - 1), true
}
